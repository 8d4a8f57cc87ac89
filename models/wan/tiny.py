"""Tiny random-weight Wan models, written in the exact file layouts users download.

Each variant is generated once (seeded) as diffusers / transformers modules and then written as:

- 'official':  the Wan-AI folder (config.json + transformer safetensors, sharded with an index for the
               14B-class variants, Wan2.x_VAE.pth, models_t5_umt5-xxl-enc-bf16.pth, google/umt5-xxl/,
               and for Wan2.1 I2V the open-clip CLIP .pth + xlm-roberta-large/);
- 'diffusers': the -Diffusers folder that WanPipeline / WanImageToVideoPipeline.from_pretrained load;
- 'comfy':     ComfyUI single files (diffusion_models/, text_encoders/, vae/, clip_vision/).

All layouts of a variant hold the same values. Every value is exactly representable in float32,
bfloat16 and float16 and none is zero, so any layout loads to identical tensors in any dtype and a
mixed-up key shows up as a wrong value.

    write_tiny_model('data/models/tiny', 'wan2.1-t2v-1.3b')   # -> {'official': Path, 'diffusers': Path, 'comfy': Path}
"""

import io
import json
import os
import random
import shutil
from functools import lru_cache
from pathlib import Path

import torch

from utils.fsutil import atomic_write_json
from .keymaps import (T5_NAMES, clip_transformers_to_official, official_state_dict, official_transformer_config,
                      vae_diffusers_to_official)
from .variants import EXPERT_FOLDERS, OFFICIAL_FILES, VARIANTS

LAYOUTS = ('official', 'diffusers', 'comfy')
FORMAT_VERSION = 1                 # bump when the generated files change, so old outputs are rewritten
MARKER = '.tiny_model.json'        # written last inside each finished layout folder

TINY = {
    'transformer': dict(
        num_attention_heads=2,     # 2 heads x 16 = dim 32
        attention_head_dim=16,
        ffn_dim=64,
        num_layers=4,              # a 2-stage pipeline gets 2 + 2 blocks
        freq_dim=256,
        text_dim=32,               # = UMT5 d_model
        patch_size=(1, 2, 2),
        eps=1e-6,
        cross_attn_norm=True,
        qk_norm='rms_norm_across_heads',
    ),
    'umt5': dict(
        d_model=32,
        d_ff=64,
        num_layers=2,
        num_heads=2,
        d_kv=16,
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
    ),
    'vae': dict(
        base_dim=8,                # real: 96 (Wan2.1), 160 (Wan2.2)
        decoder_base_dim_wan22=16, # real: 256
        dim_mult=[1, 2, 4, 4],     # the real block structure
        num_res_blocks=2,
    ),
    'clip': dict(
        hidden_size=32,            # 2 heads x 16
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=224,            # 16 x 16 patches + class token = 257 tokens, like ViT-H/14
        patch_size=14,
        projection_dim=32,
        text_dim=32,               # the official .pth's XLM-RoBERTa tower, kept so the key set has its shape
        text_layers=2,
        text_vocab=64,
        text_max_len=514,
    ),
    'tokenizer_vocab': 800,        # target SentencePiece vocabulary (unigram)
}
MODEL_TYPE = {'t2v': 't2v', 'i2v': 'i2v', 'ti2v': 'ti2v'}
COMFY_NAMES = {
    'wan2.1-t2v-1.3b': {'main': 'wan2.1_t2v_1.3B_fp16.safetensors'},
    'wan2.1-t2v-14b': {'main': 'wan2.1_t2v_14B_fp16.safetensors'},
    'wan2.1-i2v-14b': {'main': 'wan2.1_i2v_480p_14B_fp16.safetensors'},
    'wan2.2-t2v-a14b': {'high_noise': 'wan2.2_t2v_high_noise_14B_fp16.safetensors',
                        'low_noise': 'wan2.2_t2v_low_noise_14B_fp16.safetensors'},
    'wan2.2-i2v-a14b': {'high_noise': 'wan2.2_i2v_high_noise_14B_fp16.safetensors',
                        'low_noise': 'wan2.2_i2v_low_noise_14B_fp16.safetensors'},
    'wan2.2-ti2v-5b': {'main': 'wan2.2_ti2v_5B_fp16.safetensors'},
}
COMFY_FILES = {'umt5': 'text_encoders/umt5_xxl_fp16.safetensors', 'vae_wan2.1': 'vae/wan_2.1_vae.safetensors',
               'vae_wan2.2': 'vae/wan2.2_vae.safetensors', 'clip': 'clip_vision/clip_vision_h.safetensors'}
SINGLE_FILE_VARIANTS = ('wan2.1-t2v-1.3b',)   # the others ship sharded transformers


# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------

def _exact(t):
    """Round to values float32, bfloat16 and float16 all hold exactly: 8 significant bits, |x| in [2^-10, 16]."""
    t = t.to(torch.bfloat16).float()
    mag = t.abs().clamp(min=2 ** -10, max=16.0)
    return torch.where(t < 0, -mag, mag).to(torch.bfloat16).float()


def randomize(module, seed: int):
    """Give every parameter a non-zero random value: norm scales near 1, weights ~ 1/sqrt(fan_in)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if 'norm' in name or name.endswith('gamma') or 'layernorm' in name:
                value = 1.0 + 0.1 * noise
            elif p.ndim >= 2:
                value = noise / max(1, p[0].numel()) ** 0.5
            else:
                value = 0.05 * noise
            p.copy_(_exact(value))
    return module


def _random_tensors(shapes: dict, seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in shapes.items():
        noise = torch.randn(shape, generator=gen)
        out[name] = _exact(1.0 + 0.1 * noise if 'norm' in name else noise * 0.05)
    return out


# --------------------------------------------------------------------------------------------
# Tokenizers: real SentencePiece models trained on a small built-in corpus
# --------------------------------------------------------------------------------------------

_WORDS = {
    'subject': """cat dog woman man child girl boy grandmother grandfather robot horse bird dragon car train boat
        astronaut dancer chef knight wizard fox wolf bear rabbit owl dolphin whale turtle lion tiger elephant giraffe
        penguin squirrel butterfly skateboarder surfer cyclist pianist violinist painter farmer fisherman sailor pilot
        soldier monk teacher student doctor nurse detective explorer hiker climber runner swimmer juggler magician
        clown puppy kitten goat sheep cow pig duck goose swan eagle parrot crow jellyfish octopus shark crab frog
        lizard snake spider beetle bee ant deer moose camel zebra monkey gorilla panda koala kangaroo hedgehog
        balloon kite drone helicopter airplane rocket spaceship submarine tractor truck bus motorcycle bicycle""",
    'verb': """walks runs jumps dances swims flies drives sings cooks paints reads climbs rides sleeps laughs waves
        spins glides wanders races stumbles floats dives crawls marches whispers shouts juggles sketches smiles
        frowns stretches kneels bows leaps hops skips rolls slides tumbles drifts hovers circles chases follows
        carries throws catches kicks pushes pulls lifts drops opens closes builds breaks plants waters harvests
        sails rows paddles skates skis surfs wrestles boxes fences bakes stirs pours slices tastes""",
    'place': """forest beach city street mountain river desert kitchen garden castle stadium library ocean village
        bridge meadow canyon harbor market subway rooftop cathedral volcano glacier jungle island temple laboratory
        warehouse playground courtyard balcony tunnel highway lighthouse waterfall swamp prairie valley cliff cave
        lagoon reef orchard vineyard farmhouse barn greenhouse factory shipyard airport station museum gallery
        theater cinema classroom hospital office bakery cafe restaurant diner arcade casino circus carnival
        aquarium zoo parking garage alley plaza fountain monument skyscraper apartment cottage cabin tent igloo""",
    'adjective': """red blue green golden tiny giant happy quiet bright dark snowy rainy sunny ancient futuristic
        colorful misty stormy crowded empty glowing rusty wooden crystal velvet neon frozen dusty purple orange
        yellow silver bronze pink turquoise crimson emerald shiny muddy sandy rocky grassy leafy windy foggy humid
        chilly warm cozy gloomy cheerful peaceful chaotic elegant shabby luxurious mysterious magical haunted
        abandoned busy lonely noisy silent smoky sparkling""",
    'style': """cinematic slow-motion close-up aerial wide-angle handheld timelapse animated realistic dreamy
        documentary noir watercolor pixelated vintage anamorphic overexposed underexposed monochrome sepia
        infrared macro panoramic tracking dolly steadicam fisheye tilt-shift claymation cartoon sketch oil-painting
        photorealistic hyperreal surreal minimalist baroque cyberpunk steampunk""",
    'time': """morning noon evening night sunset sunrise midnight twilight dawn dusk winter summer autumn spring
        monday tuesday wednesday thursday friday saturday sunday january february march april may june july
        august september october november december yesterday today tomorrow""",
    'object': """umbrella lantern guitar trumpet drum violin camera telescope compass map letter newspaper book
        notebook pencil brush hammer ladder rope basket bucket bottle teapot cup plate spoon fork knife candle
        mirror clock window door curtain carpet pillow blanket sofa chair table desk lamp computer phone radio
        television piano flower rose tulip sunflower cactus tree leaf branch stone pebble shell feather ribbon
        scarf hat helmet jacket boots gloves necklace ring crown sword shield bow arrow""",
}


def _corpus(n=4000):
    rng = random.Random(1234)
    w = {k: v.split() for k, v in _WORDS.items()}
    lines = []
    for _ in range(n // 2):
        lines.append(f"the {rng.choice(w['subject'])} holds a {rng.choice(w['adjective'])} {rng.choice(w['object'])} "
                     f"and {rng.choice(w['verb'])} past the {rng.choice(w['object'])} on {rng.choice(w['time'])}.")
    for _ in range(n):
        lines.append(f"a {rng.choice(w['adjective'])} {rng.choice(w['subject'])} {rng.choice(w['verb'])} through the "
                     f"{rng.choice(w['adjective'])} {rng.choice(w['place'])} at {rng.choice(w['time'])}, "
                     f"{rng.choice(w['style'])} shot, {rng.randint(1, 99)} frames.")
    return lines


@lru_cache(maxsize=None)
def _spm(kind: str) -> bytes:
    """A unigram SentencePiece model. 'umt5': pad=0 eos=1 unk=2 (UMT5's ids); 'xlmr': unk=0 bos=1 eos=2."""
    import sentencepiece as spm
    ids = dict(pad_id=0, eos_id=1, unk_id=2, bos_id=-1) if kind == 'umt5' else dict(unk_id=0, bos_id=1, eos_id=2, pad_id=-1)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(_corpus()), model_writer=model,
                                   vocab_size=TINY['tokenizer_vocab'], model_type='unigram', hard_vocab_limit=False,
                                   character_coverage=1.0, num_threads=1, minloglevel=2, **ids)
    return model.getvalue()


def write_umt5_tokenizer(folder: Path):
    """google/umt5-xxl/ as the official folder ships it: spiece.model, tokenizer.json, tokenizer_config.json,
    special_tokens_map.json; loadable with AutoTokenizer.from_pretrained offline."""
    from transformers import AutoTokenizer
    folder.mkdir(parents=True, exist_ok=True)
    (folder / 'spiece.model').write_bytes(_spm('umt5'))
    special = {'eos_token': '</s>', 'pad_token': '<pad>', 'unk_token': '<unk>'}
    _write_json(folder / 'special_tokens_map.json', special)
    _write_json(folder / 'tokenizer_config.json', {**special, 'tokenizer_class': 'T5Tokenizer', 'extra_ids': 0,
                                                   'model_max_length': 512, 'sp_model_kwargs': {}})
    tokenizer = AutoTokenizer.from_pretrained(str(folder))        # converts spiece.model
    tokenizer.backend_tokenizer.save(str(folder / 'tokenizer.json'))
    return tokenizer


def write_xlmr_tokenizer(folder: Path):
    """xlm-roberta-large/ (the CLIP text tower's tokenizer in the official Wan2.1 I2V folder)."""
    from transformers import AutoTokenizer
    folder.mkdir(parents=True, exist_ok=True)
    (folder / 'sentencepiece.bpe.model').write_bytes(_spm('xlmr'))
    _write_json(folder / 'tokenizer_config.json', {'tokenizer_class': 'XLMRobertaTokenizer', 'model_max_length': 512})
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    tokenizer.backend_tokenizer.save(str(folder / 'tokenizer.json'))


def _write_json(path: Path, obj):
    path.write_text(json.dumps(obj, indent=2) + '\n')


# --------------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------------

def transformer_config(variant) -> dict:
    cfg = dict(TINY['transformer'])
    cfg['patch_size'] = list(cfg['patch_size'])
    cfg['in_channels'] = 36 if variant.i2v_condition else variant.z_dim
    cfg['out_channels'] = variant.z_dim
    if variant.uses_clip:
        cfg['image_dim'] = TINY['clip']['hidden_size']
        cfg['added_kv_proj_dim'] = cfg['num_attention_heads'] * cfg['attention_head_dim']
    return cfg


def vae_config(variant) -> dict:
    t = TINY['vae']
    cfg = dict(base_dim=t['base_dim'], z_dim=variant.z_dim, dim_mult=t['dim_mult'], num_res_blocks=t['num_res_blocks'],
               temperal_downsample=[False, True, True])
    if variant.vae == 'wan2.2':
        from .weights import WAN22_LATENTS_MEAN, WAN22_LATENTS_STD
        cfg.update(decoder_base_dim=t['decoder_base_dim_wan22'], is_residual=True, in_channels=12, out_channels=12,
                   patch_size=2, scale_factor_spatial=16, latents_mean=WAN22_LATENTS_MEAN, latents_std=WAN22_LATENTS_STD)
    return cfg


def build_modules(variant_id: str, seed: int = 0) -> dict:
    """The variant's random networks (diffusers / transformers modules), the same for every layout."""
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import CLIPVisionConfig, CLIPVisionModel, UMT5Config, UMT5EncoderModel
    variant = VARIANTS[variant_id]
    base = seed * 1000 + sorted(VARIANTS).index(variant_id) * 10
    mods = {'variant': variant, 'transformers': {}}
    for i, expert in enumerate(variant.experts):
        mods['transformers'][expert] = randomize(WanTransformer3DModel(**transformer_config(variant)), base + i)
    mods['vae'] = randomize(AutoencoderKLWan(**vae_config(variant)), base + 5)
    vocab = len(_umt5_probe_tokenizer())
    u = TINY['umt5']
    t5_config = UMT5Config(vocab_size=-(-vocab // 64) * 64, feed_forward_proj='gated-gelu', layer_norm_epsilon=1e-6,
                           is_encoder_decoder=False, tie_word_embeddings=False, **u)
    mods['umt5'] = randomize(UMT5EncoderModel(t5_config), base + 6)
    if variant.uses_clip:
        c = TINY['clip']
        clip_config = CLIPVisionConfig(hidden_size=c['hidden_size'], intermediate_size=c['intermediate_size'],
                                       num_hidden_layers=c['num_hidden_layers'], num_attention_heads=c['num_attention_heads'],
                                       image_size=c['image_size'], patch_size=c['patch_size'],
                                       projection_dim=c['projection_dim'], hidden_act='gelu', layer_norm_eps=1e-5)
        mods['clip'] = randomize(CLIPVisionModel(clip_config), base + 7)
        mods['clip_extra'] = _clip_text_tower(base + 8)
    return mods


@lru_cache(maxsize=None)
def _umt5_probe_tokenizer():
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        return write_umt5_tokenizer(Path(d))


def _clip_text_tower(seed: int) -> dict:
    """Official-name tensors the CLIP .pth carries besides the visual tower: XLM-RoBERTa text tower, heads, scale."""
    c = TINY['clip']
    d, v, embed = c['text_dim'], c['text_vocab'], c['projection_dim']
    shapes = {'log_scale': (), 'visual.head': (c['hidden_size'], embed),
              'textual.token_embedding.weight': (v, d), 'textual.type_embedding.weight': (1, d),
              'textual.pos_embedding.weight': (c['text_max_len'], d), 'textual.norm.weight': (d,), 'textual.norm.bias': (d,),
              'textual.head.0.weight': ((d + embed) // 2, d), 'textual.head.2.weight': (embed, (d + embed) // 2)}
    for i in range(c['text_layers']):
        p = f'textual.blocks.{i}.'
        for proj in 'qkvo':
            shapes[f'{p}attn.{proj}.weight'] = (d, d)
            shapes[f'{p}attn.{proj}.bias'] = (d,)
        shapes.update({f'{p}norm1.weight': (d,), f'{p}norm1.bias': (d,), f'{p}norm2.weight': (d,), f'{p}norm2.bias': (d,),
                       f'{p}ffn.0.weight': (4 * d, d), f'{p}ffn.0.bias': (4 * d,),
                       f'{p}ffn.2.weight': (d, 4 * d), f'{p}ffn.2.bias': (d,)})
    return _random_tensors(shapes, seed)


def official_vae_state(vae, variant) -> dict:
    residual = variant.vae == 'wan2.2'
    n = TINY['vae']['num_res_blocks']
    return {vae_diffusers_to_official(k, residual=residual, num_res_blocks=n): v for k, v in vae.state_dict().items()}


def official_t5_state(umt5) -> dict:
    return {T5_NAMES.backward(k): v for k, v in umt5.state_dict().items() if k != 'encoder.embed_tokens.weight'}


def official_clip_state(mods) -> dict:
    return {**clip_transformers_to_official(mods['clip'].state_dict()), **mods['clip_extra']}


# --------------------------------------------------------------------------------------------
# Layout writers
# --------------------------------------------------------------------------------------------

def _to(state: dict, dtype) -> dict:
    return {k: v.detach().to(dtype).contiguous() for k, v in state.items()}


def _save_safetensors(path: Path, state: dict):
    from safetensors.torch import save_file
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={'format': 'pt'})


def _save_sharded(folder: Path, state: dict, shards: int):
    """diffusion_pytorch_model-0000N-of-0000M.safetensors + diffusion_pytorch_model.safetensors.index.json."""
    keys = list(state)
    per = -(-len(keys) // shards)
    weight_map, total = {}, 0
    for i in range(shards):
        name = f'diffusion_pytorch_model-{i + 1:05d}-of-{shards:05d}.safetensors'
        part = {k: state[k] for k in keys[i * per:(i + 1) * per]}
        _save_safetensors(folder / name, part)
        weight_map.update({k: name for k in part})
        total += sum(t.numel() * t.element_size() for t in part.values())
    _write_json(folder / OFFICIAL_FILES['transformer_index'], {'metadata': {'total_size': total}, 'weight_map': weight_map})


def _official_config(variant, transformer) -> dict:
    return official_transformer_config(MODEL_TYPE[variant.task], dict(transformer.config))


def write_official(mods, out: Path):
    variant = mods['variant']
    shards = 1 if variant.id in SINGLE_FILE_VARIANTS else 2
    for expert, transformer in mods['transformers'].items():
        folder = out / EXPERT_FOLDERS[expert] if variant.two_experts else out
        folder.mkdir(parents=True, exist_ok=True)
        _write_json(folder / OFFICIAL_FILES['config'], _official_config(variant, transformer))
        state = _to(official_state_dict(transformer.state_dict()), torch.float32)
        if shards == 1:
            _save_safetensors(folder / OFFICIAL_FILES['transformer_single'], state)
        else:
            _save_sharded(folder, state, shards)
    if variant.two_experts:
        _write_json(out / 'configuration.json', {'framework': 'Pytorch', 'task': f'{variant.task}-video'})
    torch.save(_to(official_vae_state(mods['vae'], variant), torch.float32), out / OFFICIAL_FILES[f'vae_{variant.vae}'])
    torch.save(_to(official_t5_state(mods['umt5']), torch.bfloat16), out / OFFICIAL_FILES['t5'])
    write_umt5_tokenizer(out / OFFICIAL_FILES['t5_tokenizer'])
    if variant.uses_clip:
        torch.save(_to(official_clip_state(mods), torch.float16), out / OFFICIAL_FILES['clip'])
        write_xlmr_tokenizer(out / OFFICIAL_FILES['clip_tokenizer'])


def write_diffusers(mods, out: Path):
    from diffusers import UniPCMultistepScheduler, WanImageToVideoPipeline, WanPipeline
    from transformers import CLIPImageProcessor
    variant = mods['variant']
    tokenizer = _umt5_probe_tokenizer()
    experts = mods['transformers']
    parts = dict(tokenizer=tokenizer, text_encoder=mods['umt5'].to(torch.bfloat16), vae=mods['vae'],
                 scheduler=UniPCMultistepScheduler(prediction_type='flow_prediction', use_flow_sigmas=True,
                                                   num_train_timesteps=1000,
                                                   flow_shift=5.0 if variant.id == 'wan2.2-ti2v-5b' else 3.0),
                 transformer=experts.get('main', experts.get('high_noise')), transformer_2=experts.get('low_noise'),
                 boundary_ratio=variant.boundary, expand_timesteps=variant.id == 'wan2.2-ti2v-5b')
    if variant.task == 'i2v':
        if variant.uses_clip:
            size = TINY['clip']['image_size']
            parts['image_encoder'] = mods['clip'].to(torch.bfloat16)
            parts['image_processor'] = CLIPImageProcessor(
                size={'shortest_edge': size}, crop_size={'height': size, 'width': size}, do_center_crop=True,
                resample=3, image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711])
        pipe = WanImageToVideoPipeline(**parts)
    else:
        pipe = WanPipeline(**parts)
    pipe.save_pretrained(str(out), safe_serialization=True)
    if variant.uses_clip:     # name the class the hub repos name (transformers picks its backend on load)
        index = json.loads((out / 'model_index.json').read_text())
        index['image_processor'] = ['transformers', 'CLIPImageProcessor']
        _write_json(out / 'model_index.json', index)
    mods['umt5'].float()
    if variant.uses_clip:
        mods['clip'].float()
        # Hub files were written with the 'vision_model.' prefix, which transformers strips on load.
        path = out / 'image_encoder' / 'model.safetensors'
        from safetensors.torch import load_file
        _save_safetensors(path, {'vision_model.' + k: v for k, v in load_file(str(path)).items()})
    if variant.id not in SINGLE_FILE_VARIANTS:       # the 14B-class repos ship sharded transformers
        for sub in ('transformer', 'transformer_2'):
            if (out / sub).is_dir():
                (out / sub / 'diffusion_pytorch_model.safetensors').unlink()
                model = experts.get('low_noise') if sub == 'transformer_2' else parts['transformer']
                _save_sharded(out / sub, _to(model.state_dict(), torch.float32), 2)
    shutil.rmtree(out / 'tokenizer')
    write_umt5_tokenizer(out / 'tokenizer')


def write_comfy(mods, out: Path):
    variant = mods['variant']
    for expert, transformer in mods['transformers'].items():
        state = {'model.diffusion_model.' + k: v for k, v in official_state_dict(transformer.state_dict()).items()}
        _save_safetensors(out / 'diffusion_models' / COMFY_NAMES[variant.id][expert], _to(state, torch.float16))
    umt5 = {k: v for k, v in mods['umt5'].state_dict().items() if k != 'encoder.embed_tokens.weight'}
    _save_safetensors(out / COMFY_FILES['umt5'], _to(umt5, torch.float16))
    _save_safetensors(out / COMFY_FILES[f'vae_{variant.vae}'], _to(official_vae_state(mods['vae'], variant), torch.float32))
    if variant.uses_clip:
        state = {'vision_model.' + k: v for k, v in mods['clip'].state_dict().items()}
        state['visual_projection.weight'] = mods['clip_extra']['visual.head'].t()
        _save_safetensors(out / COMFY_FILES['clip'], _to(state, torch.float16))


WRITERS = {'official': write_official, 'diffusers': write_diffusers, 'comfy': write_comfy}


# --------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------

def _marker(variant_id, layout, seed):
    return {'variant': variant_id, 'layout': layout, 'seed': seed, 'format_version': FORMAT_VERSION}


def is_complete(folder: Path, variant_id: str, layout: str, seed: int = 0) -> bool:
    try:
        return json.loads((folder / MARKER).read_text()) == _marker(variant_id, layout, seed)
    except (OSError, ValueError):
        return False


def write_tiny_model(out_dir, variant_id: str, layouts=LAYOUTS, seed: int = 0) -> dict:
    """Write <out_dir>/<variant_id>/<layout> for each layout; skip layouts already complete.

    Each layout is written into a temporary sibling folder and renamed into place, so an interrupted run
    never leaves a half model behind.
    """
    if variant_id not in VARIANTS:
        raise ValueError(f'unknown variant {variant_id!r}; choose from {", ".join(VARIANTS)}')
    for layout in layouts:
        if layout not in WRITERS:
            raise ValueError(f'unknown layout {layout!r}; choose from {", ".join(LAYOUTS)}')
    base = Path(out_dir) / variant_id
    paths = {layout: base / layout for layout in layouts}
    todo = [l for l in layouts if not is_complete(paths[l], variant_id, l, seed)]
    if not todo:
        return paths
    mods = build_modules(variant_id, seed)
    base.mkdir(parents=True, exist_ok=True)
    for layout in todo:
        tmp = base / f'.{layout}.partial-{os.getpid()}'
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            WRITERS[layout](mods, tmp)
            atomic_write_json(tmp / MARKER, _marker(variant_id, layout, seed), durable=False)
            if paths[layout].exists():
                old = base / f'.{layout}.old-{os.getpid()}'
                os.replace(paths[layout], old)
                shutil.rmtree(old, ignore_errors=True)
            os.replace(tmp, paths[layout])
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return paths


def write_all(out_dir, layouts=LAYOUTS, seed: int = 0) -> dict:
    """Every variant in every layout: {variant_id: {layout: path}}."""
    return {v: write_tiny_model(out_dir, v, layouts, seed) for v in VARIANTS}
