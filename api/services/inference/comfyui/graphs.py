"""API-format ComfyUI graphs ({node id: {class_type, inputs, _meta}}) for Wan previews, one template per
model family, and the node facts they rely on.

NODES records, for every node class a template uses, the inputs ComfyUI's sources declare (INPUT_TYPES,
or io.Schema in newer files) and the outputs, with the file each comes from. `problems(graph, info)`
checks a graph against those facts, or against a live server's GET /object_info, which has the same
shape (`object_info()` builds it from NODES).

Families (FAMILY): Wan2.1 t2v (UNETLoader -> LoraLoaderModelOnly -> ModelSamplingSD3 -> KSampler on an
EmptyHunyuanLatentVideo), Wan2.1 i2v (+ CLIPVisionEncode and WanImageToVideo), Wan2.2 A14B (two
UNETLoaders, each with its LoRA, and two KSamplerAdvanced split where the timestep crosses the boundary)
and Wan2.2 5B (Wan22ImageToVideoLatent). Every graph ends VAEDecode -> CreateVideo -> SaveVideo (mp4, h264).
"""

from models.wan.inference import expert_switch_step
from models.wan.variants import VARIANTS

SAMPLERS = ('euler', 'uni_pc', 'uni_pc_bh2', 'dpmpp_2m')      # a few of comfy.samplers.KSampler.SAMPLERS
SCHEDULERS = ('simple', 'normal', 'karras', 'beta')            # a few of comfy.samplers.SCHEDULER_NAMES
# class_type: (source, required inputs, optional inputs, outputs). Input kinds: a type name for links,
# 'INT' / 'FLOAT' / 'STRING' for values, or a tuple of choices (COMBO; file lists are filled in by a server).
FILES = ()                        # a combo whose choices are the files of a model folder
NODES = {
    'UNETLoader': ('nodes.py', {'unet_name': FILES, 'weight_dtype': ('default', 'fp8_e4m3fn', 'fp8_e4m3fn_fast', 'fp8_e5m2')},
                   {}, ('MODEL',)),
    'CLIPLoader': ('nodes.py', {'clip_name': FILES, 'type': ('stable_diffusion', 'stable_cascade', 'sd3', 'stable_audio',
                                                             'mochi', 'ltxv', 'pixart', 'cosmos', 'lumina2', 'wan',
                                                             'hidream', 'chroma', 'ace', 'omnigen2', 'qwen_image')},
                   {'device': ('default', 'cpu')}, ('CLIP',)),
    'VAELoader': ('nodes.py', {'vae_name': FILES}, {}, ('VAE',)),
    'CLIPVisionLoader': ('nodes.py', {'clip_name': FILES}, {}, ('CLIP_VISION',)),
    'CLIPVisionEncode': ('nodes.py', {'clip_vision': 'CLIP_VISION', 'image': 'IMAGE', 'crop': ('center', 'none')}, {},
                         ('CLIP_VISION_OUTPUT',)),
    'LoadImage': ('nodes.py', {'image': FILES}, {}, ('IMAGE', 'MASK')),
    'CLIPTextEncode': ('nodes.py', {'text': 'STRING', 'clip': 'CLIP'}, {}, ('CONDITIONING',)),
    'LoraLoaderModelOnly': ('nodes.py', {'model': 'MODEL', 'lora_name': FILES, 'strength_model': 'FLOAT'}, {},
                            ('MODEL',)),
    'ModelSamplingSD3': ('comfy_extras/nodes_model_advanced.py', {'model': 'MODEL', 'shift': 'FLOAT'}, {}, ('MODEL',)),
    'EmptyHunyuanLatentVideo': ('comfy_extras/nodes_hunyuan.py',
                                {'width': 'INT', 'height': 'INT', 'length': 'INT', 'batch_size': 'INT'}, {}, ('LATENT',)),
    'WanImageToVideo': ('comfy_extras/nodes_wan.py',
                        {'positive': 'CONDITIONING', 'negative': 'CONDITIONING', 'vae': 'VAE', 'width': 'INT',
                         'height': 'INT', 'length': 'INT', 'batch_size': 'INT'},
                        {'clip_vision_output': 'CLIP_VISION_OUTPUT', 'start_image': 'IMAGE'},
                        ('CONDITIONING', 'CONDITIONING', 'LATENT')),
    'Wan22ImageToVideoLatent': ('comfy_extras/nodes_wan.py',
                                {'vae': 'VAE', 'width': 'INT', 'height': 'INT', 'length': 'INT', 'batch_size': 'INT'},
                                {'start_image': 'IMAGE'}, ('LATENT',)),
    'KSampler': ('nodes.py', {'model': 'MODEL', 'seed': 'INT', 'steps': 'INT', 'cfg': 'FLOAT',
                              'sampler_name': SAMPLERS,
                              'scheduler': SCHEDULERS, 'positive': 'CONDITIONING',
                              'negative': 'CONDITIONING', 'latent_image': 'LATENT', 'denoise': 'FLOAT'}, {}, ('LATENT',)),
    'KSamplerAdvanced': ('nodes.py', {'model': 'MODEL', 'add_noise': ('enable', 'disable'), 'noise_seed': 'INT',
                                      'steps': 'INT', 'cfg': 'FLOAT', 'sampler_name': SAMPLERS,
                                      'scheduler': SCHEDULERS, 'positive': 'CONDITIONING',
                                      'negative': 'CONDITIONING', 'latent_image': 'LATENT', 'start_at_step': 'INT',
                                      'end_at_step': 'INT', 'return_with_leftover_noise': ('disable', 'enable')},
                         {}, ('LATENT',)),
    'VAEDecode': ('nodes.py', {'samples': 'LATENT', 'vae': 'VAE'}, {}, ('IMAGE',)),
    'CreateVideo': ('comfy_extras/nodes_video.py', {'images': 'IMAGE', 'fps': 'FLOAT'}, {'audio': 'AUDIO'}, ('VIDEO',)),
    'SaveVideo': ('comfy_extras/nodes_video.py', {'video': 'VIDEO', 'filename_prefix': 'STRING', 'format': ('auto', 'mp4'),
                                                  'codec': ('auto', 'h264')}, {}, ()),
}
OUTPUT_NODES = ('SaveVideo',)
SOFT_CHOICES = ('format', 'codec')        # replaced by the server's default when it lacks our choice

# Files as Comfy-Org's repackaged Wan repos name them (split_files/<folder>/<name>).
COMMON_FILES = {'clip': 'umt5_xxl_fp8_e4m3fn_scaled.safetensors', 'vae': 'wan_2.1_vae.safetensors'}
MODEL_FILES = {
    'wan2.1-t2v-1.3b': {'unet': 'wan2.1_t2v_1.3B_fp16.safetensors'},
    'wan2.1-t2v-14b': {'unet': 'wan2.1_t2v_14B_fp16.safetensors'},
    'wan2.1-i2v-14b': {'unet': 'wan2.1_i2v_480p_14B_fp16.safetensors', 'clip_vision': 'clip_vision_h.safetensors'},
    'wan2.2-t2v-a14b': {'unet': 'wan2.2_t2v_high_noise_14B_fp16.safetensors',
                        'unet_low': 'wan2.2_t2v_low_noise_14B_fp16.safetensors'},
    'wan2.2-i2v-a14b': {'unet': 'wan2.2_i2v_high_noise_14B_fp16.safetensors',
                        'unet_low': 'wan2.2_i2v_low_noise_14B_fp16.safetensors'},
    'wan2.2-ti2v-5b': {'unet': 'wan2.2_ti2v_5B_fp16.safetensors', 'vae': 'wan2.2_vae.safetensors'},
}
SAMPLER = ('uni_pc', 'simple')            # Wan's own solver (UniPC on the flow-matching sigmas)


def model_files(variant_id, model_table=None, overrides=None):
    """ComfyUI file names of the model parts: Comfy-Org's names, the task's own ComfyUI transformer file
    when it trained from one, then what the request overrides."""
    names = {**COMMON_FILES, **MODEL_FILES[variant_id]}
    tp = (model_table or {}).get('transformer_path') or ''
    if tp.endswith('.safetensors') and not VARIANTS[variant_id].two_experts:
        names['unet'] = tp.replace('\\', '/').rsplit('/', 1)[-1]
    return {**names, **(overrides or {})}


# --------------------------------------------------------------------------------------------
# Building graphs
# --------------------------------------------------------------------------------------------

class Graph:
    def __init__(self):
        self.nodes = {}

    def add(self, class_type, title, **inputs):
        node_id = str(len(self.nodes) + 1)
        self.nodes[node_id] = {'class_type': class_type, 'inputs': inputs, '_meta': {'title': title}}
        return node_id


def out(node_id, slot=0):
    return [node_id, slot]


def _model(g, unet, lora, strength, shift, title):
    m = g.add('UNETLoader', title, unet_name=unet, weight_dtype='default')
    if lora:
        m = g.add('LoraLoaderModelOnly', f'LoRA ({title})', model=out(m), lora_name=lora, strength_model=float(strength))
    return g.add('ModelSamplingSD3', f'Shift ({title})', model=out(m), shift=float(shift))


def _text(g, files, cell):
    clip = g.add('CLIPLoader', 'Text encoder', clip_name=files['clip'], type='wan', device='default')
    pos = g.add('CLIPTextEncode', 'Prompt', text=cell['prompt'], clip=out(clip))
    neg = g.add('CLIPTextEncode', 'Negative prompt', text=cell['negative_prompt'], clip=out(clip))
    return out(pos), out(neg)


def _sampler(g, model, pos, neg, latent, cell, cfg, title='Sampler'):
    return g.add('KSampler', title, model=out(model), seed=int(cell['seed']), steps=int(cell['steps']), cfg=float(cfg),
                 sampler_name=SAMPLER[0], scheduler=SAMPLER[1], positive=pos, negative=neg, latent_image=latent,
                 denoise=1.0)


def _save(g, samples, vae, cell, prefix):
    images = g.add('VAEDecode', 'Decode', samples=out(samples), vae=out(vae))
    video = g.add('CreateVideo', 'Video', images=out(images), fps=float(cell['fps']))
    return g.add('SaveVideo', 'Save video', video=out(video), filename_prefix=prefix, format='mp4', codec='h264')


def _size(cell):
    return dict(width=int(cell['width']), height=int(cell['height']), length=int(cell['frames']), batch_size=1)


def wan21_t2v(g, cell, files, loras, image, prefix):
    model = _model(g, files['unet'], loras.get('main'), cell['strength'], cell['shift'], 'Model')
    pos, neg = _text(g, files, cell)
    vae = g.add('VAELoader', 'VAE', vae_name=files['vae'])
    latent = g.add('EmptyHunyuanLatentVideo', 'Empty video', **_size(cell))
    return _save(g, _sampler(g, model, pos, neg, out(latent), cell, cell['guidance']), vae, cell, prefix)


def wan21_i2v(g, cell, files, loras, image, prefix):
    model = _model(g, files['unet'], loras.get('main'), cell['strength'], cell['shift'], 'Model')
    pos, neg = _text(g, files, cell)
    vae = g.add('VAELoader', 'VAE', vae_name=files['vae'])
    start = g.add('LoadImage', 'First frame', image=image)
    vision = g.add('CLIPVisionLoader', 'CLIP vision', clip_name=files['clip_vision'])
    seen = g.add('CLIPVisionEncode', 'Encode first frame', clip_vision=out(vision), image=out(start), crop='none')
    cond = g.add('WanImageToVideo', 'Image to video', positive=pos, negative=neg, vae=out(vae), **_size(cell),
                 clip_vision_output=out(seen), start_image=out(start))
    sampled = _sampler(g, model, out(cond, 0), out(cond, 1), out(cond, 2), cell, cell['guidance'])
    return _save(g, sampled, vae, cell, prefix)


def wan22_a14b(g, cell, files, loras, image, prefix):
    """High-noise expert for the first steps, low-noise expert for the rest, like the boundary in diffusers."""
    variant = VARIANTS[cell['variant']]
    both = loras.get('main')
    high = _model(g, files['unet'], loras.get('high_noise', both), cell['strength'], cell['shift'], 'High-noise model')
    low = _model(g, files['unet_low'], loras.get('low_noise', both), cell['strength'], cell['shift'], 'Low-noise model')
    pos, neg = _text(g, files, cell)
    vae = g.add('VAELoader', 'VAE', vae_name=files['vae'])
    if image:
        start = g.add('LoadImage', 'First frame', image=image)
        cond = g.add('WanImageToVideo', 'Image to video', positive=pos, negative=neg, vae=out(vae), **_size(cell),
                     start_image=out(start))
        pos, neg, latent = out(cond, 0), out(cond, 1), out(cond, 2)
    else:
        latent = out(g.add('EmptyHunyuanLatentVideo', 'Empty video', **_size(cell)))
    steps = int(cell['steps'])
    switch = expert_switch_step(steps, cell['shift'], variant.boundary)
    low_cfg = cell['guidance'] if cell.get('guidance_low') is None else cell['guidance_low']
    common = dict(noise_seed=int(cell['seed']), steps=steps, sampler_name=SAMPLER[0], scheduler=SAMPLER[1],
                  positive=pos, negative=neg)
    if switch > 0:
        latent = out(g.add('KSamplerAdvanced', 'Sampler (high noise)', model=out(high), add_noise='enable',
                           cfg=float(cell['guidance']), latent_image=latent, start_at_step=0, end_at_step=switch,
                           return_with_leftover_noise='enable' if switch < steps else 'disable', **common))
    if switch < steps:
        latent = out(g.add('KSamplerAdvanced', 'Sampler (low noise)', model=out(low),
                           add_noise='disable' if switch > 0 else 'enable', cfg=float(low_cfg), latent_image=latent,
                           start_at_step=switch, end_at_step=10000, return_with_leftover_noise='disable', **common))
    return _save(g, latent[0], vae, cell, prefix)


def wan22_5b(g, cell, files, loras, image, prefix):
    model = _model(g, files['unet'], loras.get('main'), cell['strength'], cell['shift'], 'Model')
    pos, neg = _text(g, files, cell)
    vae = g.add('VAELoader', 'VAE', vae_name=files['vae'])
    extra = {'start_image': out(g.add('LoadImage', 'First frame', image=image))} if image else {}
    latent = g.add('Wan22ImageToVideoLatent', 'Video latent', vae=out(vae), **_size(cell), **extra)
    return _save(g, _sampler(g, model, pos, neg, out(latent), cell, cell['guidance']), vae, cell, prefix)


TEMPLATES = {'wan21_t2v': wan21_t2v, 'wan21_i2v': wan21_i2v, 'wan22_a14b': wan22_a14b, 'wan22_5b': wan22_5b}
FAMILY = {'wan2.1-t2v-1.3b': 'wan21_t2v', 'wan2.1-t2v-14b': 'wan21_t2v', 'wan2.1-i2v-14b': 'wan21_i2v',
          'wan2.2-t2v-a14b': 'wan22_a14b', 'wan2.2-i2v-a14b': 'wan22_a14b', 'wan2.2-ti2v-5b': 'wan22_5b'}


def build(variant_id, cell, files, loras=None, image=None, prefix='odeo/preview'):
    """(graph, id of the SaveVideo node). loras: {'main' | 'high_noise' | 'low_noise': lora_name} as ComfyUI
    lists them; image: the uploaded first frame's name (i2v, ti2v); cell: the infer job's cell."""
    g = Graph()
    save = TEMPLATES[FAMILY[variant_id]](g, {**cell, 'variant': variant_id}, files, loras or {}, image, prefix)
    return g.nodes, save


# --------------------------------------------------------------------------------------------
# Node facts in /object_info form, and checking graphs against them
# --------------------------------------------------------------------------------------------

def object_info(files=None):
    """NODES in the shape of ComfyUI's GET /object_info. files: {(class_type, input): [file names]} fills the
    combos whose choices are files (model folders, uploaded images); other combos list NODES' choices."""
    files = files or {}

    def spec(cls, name, kind):
        if isinstance(kind, tuple):
            return [list(files.get((cls, name), [])) if kind == FILES else list(kind), {}]
        return [kind, {}]

    out_ = {}
    for cls, (source, required, optional, outputs) in NODES.items():
        out_[cls] = {
            'input': {'required': {k: spec(cls, k, v) for k, v in required.items()},
                      'optional': {k: spec(cls, k, v) for k, v in optional.items()}},
            'input_order': {'required': list(required), 'optional': list(optional)},
            'output': list(outputs), 'output_node': cls in OUTPUT_NODES, 'name': cls, 'python_module': source,
        }
    return out_


def choices_of(spec):
    """The options of a combo input spec, in the old ([[...], {}]) or new (['COMBO', {'options': [...]}]) form."""
    if isinstance(spec[0], list):
        return spec[0]
    if spec[0] == 'COMBO':
        return (spec[1] if len(spec) > 1 else {}).get('options', [])
    return None


def problems(graph, info):
    """What ComfyUI would refuse in `graph`, checked against /object_info-shaped `info` (names, links)."""
    found = []
    for node_id, node in graph.items():
        cls = node.get('class_type')
        if cls not in info:
            found.append(f'node {node_id}: no node class {cls!r}')
            continue
        req, opt = info[cls]['input'].get('required', {}), info[cls]['input'].get('optional', {})
        for name in req:
            if name not in node['inputs']:
                found.append(f'node {node_id} {cls}: required input {name!r} missing')
        for name, value in node['inputs'].items():
            spec = req.get(name) or opt.get(name)
            if spec is None:
                found.append(f'node {node_id} {cls}: no input named {name!r}')
            elif isinstance(value, list):
                src = graph.get(value[0])
                outs = info.get(src['class_type'], {}).get('output', []) if src else []
                if src is None or value[1] >= len(outs):
                    found.append(f'node {node_id} {cls}: input {name!r} links to a missing output {value}')
                elif outs[value[1]] != spec[0]:
                    found.append(f'node {node_id} {cls}: input {name!r} wants {spec[0]}, gets {outs[value[1]]}')
    if not any(n.get('class_type') in OUTPUT_NODES for n in graph.values()):
        found.append('no output node')
    return found
