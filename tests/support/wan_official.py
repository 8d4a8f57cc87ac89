"""The official Wan code (the `wan22` package, test-only) as an oracle for our loaders.

`wan/__init__.py` imports every pipeline, and with them flash-attn, opencv and an API client; the
networks themselves (`wan/modules/*`) need none of these. `official()` imports just those modules, by
building the `wan` packages by hand (their `__init__` files never run), and gives every module that
uses flash-attn an SDPA stand-in that runs on the CPU (`flash_attention` below).

The module also builds tiny official networks with random values in every parameter (`randomize`), and
writes them as the Wan-AI folders lay them out (`write_official_folder`).
"""

import contextlib
import functools
import importlib
import importlib.util
import sys
import types
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

MODULES = ('attention', 'model', 'tokenizers', 't5', 'vae2_1', 'vae2_2', 'animate.xlm_roberta', 'animate.clip',
           'animate.face_blocks', 'animate.motion_encoder', 'animate.model_animate')

# Tiny sizes (real ones in comments).
TRANSFORMER = dict(dim=32, ffn_dim=64, freq_dim=256, num_heads=2, num_layers=2, eps=1e-6)   # 1536/5120, 30/40 layers
T5 = dict(dim=32, dim_attn=32, dim_ffn=64, num_heads=2, encoder_layers=2, decoder_layers=2, num_buckets=32)  # 4096 ...
VAE21 = dict(dim=8)                       # 96
VAE22 = dict(dim=8, dec_dim=16)           # 160, 256
CLIP = dict(embed_dim=32, vision_dim=32, vision_heads=2, vision_layers=2, vocab_size=64, text_dim=32, text_heads=2,
            text_layers=2)                # 1024, 1280, 16, 32, 250002, 1024, 16, 24


# --------------------------------------------------------------------------------------------
# flash-attn stand-in
# --------------------------------------------------------------------------------------------

def flash_attention(q, k, v, q_lens=None, k_lens=None, dropout_p=0., softmax_scale=None, q_scale=None, causal=False,
                    window_size=(-1, -1), deterministic=False, dtype=torch.bfloat16, version=None):
    """`wan.modules.attention.flash_attention` with torch's SDPA: the same arguments and the same result as
    flash-attn's varlen kernel on [B, L, N, C] tensors: keys past k_lens[i] are masked out, queries past
    q_lens[i] give zeros, `causal` and `window_size` are aligned to the bottom right as flash-attn does.

    One difference, on purpose: flash-attn only runs in float16/bfloat16, so the original casts float32
    inputs to `dtype`; the stand-in computes in the inputs' own dtype so float32 outputs can be compared
    to 1e-5. The output has q's dtype, as in the original."""
    assert dtype in (torch.float16, torch.bfloat16)
    b, lq, nq, _ = q.shape
    lk, nk = k.shape[1], k.shape[2]
    out_dtype = q.dtype
    q, k = q.to(v.dtype), k.to(v.dtype)
    if q_scale is not None:
        q = q * q_scale
    if nk != nq:                                    # grouped heads
        k = k.repeat_interleave(nq // nk, dim=2)
        v = v.repeat_interleave(nq // nk, dim=2)
    q_lens = torch.full((b,), lq) if q_lens is None else q_lens.cpu()
    k_lens = torch.full((b,), lk) if k_lens is None else k_lens.cpu()
    i = torch.arange(lq).view(-1, 1)
    j = torch.arange(lk).view(1, -1)
    masks = []
    for n_q, n_k in zip(q_lens.tolist(), k_lens.tolist()):
        allowed = (j < n_k).expand(lq, lk).clone()
        shift = n_k - n_q                           # bottom-right alignment of query i with key i + shift
        if causal:
            allowed &= j <= i + shift
        left, right = window_size
        if left >= 0:
            allowed &= j >= i + shift - left
        if right >= 0:
            allowed &= j <= i + shift + right
        masks.append(allowed)
    mask = torch.stack(masks).unsqueeze(1).to(q.device)           # [B, 1, Lq, Lk]
    x = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask,
                                       dropout_p=dropout_p, scale=softmax_scale).transpose(1, 2)
    valid = (torch.arange(lq).view(1, -1) < q_lens.view(-1, 1)).to(x.device)
    x = torch.where(valid[:, :, None, None], x, torch.zeros_like(x))
    return x.type(out_dtype)


# --------------------------------------------------------------------------------------------
# Importing wan.modules.* without wan/__init__.py
# --------------------------------------------------------------------------------------------

def _package(name, folder):
    module = types.ModuleType(name)
    module.__path__ = [str(folder)]
    module.__package__ = name
    module.__spec__ = importlib.util.spec_from_loader(name, loader=None, is_package=True)
    module.__spec__.submodule_search_locations = [str(folder)]
    return module


def _torchvision_stand_in():
    """animate/clip.py does `import torchvision.transforms as T` and uses T.Normalize (the rest only to build
    a resize transform we never call). Used only while that module imports, when torchvision is absent."""
    class Normalize:
        def __init__(self, mean, std):
            self.mean, self.std = mean, std

        def __call__(self, x):
            shape = (-1, 1, 1)
            return (x - torch.tensor(self.mean, dtype=x.dtype).view(shape)) / torch.tensor(self.std, dtype=x.dtype).view(shape)

    class Compose:
        def __init__(self, transforms):
            self.transforms = transforms

    class Unused:
        def __init__(self, *args, **kwargs):
            pass

    transforms = types.ModuleType('torchvision.transforms')
    transforms.Normalize, transforms.Compose, transforms.Resize, transforms.ToTensor = Normalize, Compose, Unused, Unused
    transforms.InterpolationMode = types.SimpleNamespace(BICUBIC='bicubic')
    root = types.ModuleType('torchvision')
    root.transforms = transforms
    return {'torchvision': root, 'torchvision.transforms': transforms}


@contextlib.contextmanager
def _import_shims(short):
    """What importing one module needs on a CPU-only machine without torchvision; undone afterwards (so no
    other library ever sees the torchvision stand-in)."""
    added = {}
    if short == 'animate.clip' and importlib.util.find_spec('torchvision') is None:
        added = _torchvision_stand_in()
    sys.modules.update(added)
    current_device = torch.cuda.current_device
    torch.cuda.current_device = lambda: 'cpu'     # t5.py evaluates it as a default argument at import
    try:
        yield
    finally:
        torch.cuda.current_device = current_device
        for name in added:
            sys.modules.pop(name, None)


@functools.lru_cache(maxsize=None)
def official():
    """{short name: module} for MODULES, every `flash_attention` replaced by the stand-in."""
    spec = importlib.util.find_spec('wan')
    if spec is None or not spec.submodule_search_locations:
        raise ImportError('the official Wan code is not installed: run tools/setup.sh --test (wan22, --no-deps)')
    root = Path(list(spec.submodule_search_locations)[0])
    if 'wan' not in sys.modules or getattr(sys.modules['wan'], '__file__', None):
        for name, folder in (('wan', root), ('wan.modules', root / 'modules'),
                             ('wan.modules.animate', root / 'modules' / 'animate'),
                             ('wan.distributed', root / 'distributed')):
            sys.modules[name] = _package(name, folder)
    import diffusers.models.modeling_utils  # noqa: F401  (imported before any stand-in exists)
    import transformers  # noqa: F401
    out = {}
    for short in MODULES:
        with _import_shims(short):
            out[short] = importlib.import_module(f'wan.modules.{short}')
    for module in list(out.values()) + [sys.modules.get('wan.distributed.sequence_parallel')]:
        if module is not None and hasattr(module, 'flash_attention'):
            module.flash_attention = flash_attention
    return out


# --------------------------------------------------------------------------------------------
# Random values everywhere
# --------------------------------------------------------------------------------------------

def randomize(module, seed):
    """Every floating parameter and buffer gets a random value: the scales and shifts of norms 1 + 0.1 * N(0, 1)
    and 0.1 * N(0, 1), everything else N(0, 1/fan_in) (0.1 for vectors), so no tensor is left at the 0 or 1
    of the official inits, where a swapped or dropped tensor would not change the output."""
    gen = torch.Generator().manual_seed(seed)
    norms = {name for name, m in module.named_modules()
             if 'norm' in type(m).__name__.lower() or isinstance(m, (nn.LayerNorm, nn.GroupNorm))}
    with torch.no_grad():
        tensors = list(module.named_parameters()) + [(n, b) for n, b in module.named_buffers() if b.is_floating_point()]
        for name, p in tensors:
            owner, _, leaf = name.rpartition('.')
            noise = torch.randn(p.shape, generator=gen)
            if owner in norms or leaf == 'gamma':
                value = (1 + 0.1 * noise) if leaf in ('weight', 'gamma') else 0.1 * noise
            elif p.ndim == 0:
                value = 1 + 0.1 * noise
            elif p.ndim == 1:
                value = 0.1 * noise
            else:
                value = noise / p[0].numel() ** 0.5
            p.copy_(value)
    return module


# --------------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------------

def transformer(model_type, in_dim, out_dim, text_dim, seed):
    """The official WanModel ('t2v', 'i2v' (Wan2.2 A14B), 'ti2v'), random values."""
    m = official()['model']
    return randomize(m.WanModel(model_type=model_type, in_dim=in_dim, out_dim=out_dim, text_dim=text_dim,
                                **TRANSFORMER), seed).eval()


def wan21_i2v_transformer(text_dim, clip_dim, seed):
    """Wan2.1 I2V: the official WanModel with image cross-attention in every block and the CLIP projection.

    wan22's WanModel dropped those (Wan2.2 I2V has no CLIP); the package keeps them as the animate model's
    `WanAnimateCrossAttention` and `MLPProj`, the same modules (names q/k/v/o/norm_q/norm_k/k_img/v_img/
    norm_k_img, img_emb.proj.0-4) and computation as Wan2.1's WanI2VCrossAttention and MLPProj. As in Wan2.1's
    forward, the projected CLIP tokens go before the text tokens of the context: `set_clip(model, clip_fea)`
    before calling the model."""
    m, a = official()['model'], official()['animate.model_animate']
    model = m.WanModel(model_type='i2v', in_dim=36, out_dim=16, text_dim=text_dim, **TRANSFORMER)
    cfg = TRANSFORMER
    for block in model.blocks:
        block.cross_attn = a.WanAnimateCrossAttention(cfg['dim'], cfg['num_heads'], (-1, -1), True, cfg['eps'],
                                                      use_img_emb=True)
    model.img_emb = a.MLPProj(clip_dim, cfg['dim'])
    model._clip_fea = None

    def prepend_clip(module, args, context):
        return torch.cat([model.img_emb(model._clip_fea), context], dim=1)

    model.text_embedding.register_forward_hook(prepend_clip)
    return randomize(model, seed).eval()


def set_clip(model, clip_fea):
    model._clip_fea = clip_fea


def t5_encoder(vocab, seed):
    t5 = official()['t5']
    cfg = {k: v for k, v in T5.items()}
    model = t5.umt5_xxl(encoder_only=True, vocab_size=vocab, **cfg)
    return randomize(model, seed).eval()


def vae(kind, seed):
    """WanVAE_ of vae2_1 ('wan2.1', z 16) or vae2_2 ('wan2.2', z 48, RGB patchified 2x2) with the official
    wrappers' block structure."""
    if kind == 'wan2.1':
        v = official()['vae2_1']
        model = v.WanVAE_(z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                          temperal_downsample=[False, True, True], **VAE21)
    else:
        v = official()['vae2_2']
        model = v.WanVAE_(z_dim=48, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                          temperal_downsample=[False, True, True], **VAE22)
    return randomize(model, seed).eval()


def clip(seed):
    c = official()['animate.clip']
    model = c.clip_xlm_roberta_vit_h_14(**CLIP)
    return randomize(model, seed).eval()


# --------------------------------------------------------------------------------------------
# The official wrappers, on the tiny sizes: they read our files with the official code
# --------------------------------------------------------------------------------------------

@contextlib.contextmanager
def tiny_wrappers(t5_vocab=None):
    """The official wrappers (T5EncoderModel, Wan2_1_VAE, Wan2_2_VAE, CLIPModel) build the real sizes through
    module-level factories; for the duration, those factories build the tiny sizes instead (the T5 with
    `t5_vocab` tokens). The wrappers' own code (file loading, tokenising, normalising, preprocessing) runs
    unchanged."""
    mods = official()
    t5_sizes = {**T5, **({'vocab_size': t5_vocab} if t5_vocab else {})}
    patches = [(mods['t5'], 'umt5_xxl', functools.partial(mods['t5'].umt5_xxl, **t5_sizes)),
               (mods['vae2_1'], '_video_vae', functools.partial(mods['vae2_1']._video_vae, **VAE21)),
               (mods['vae2_2'], '_video_vae', _vae22_factory(mods['vae2_2']._video_vae)),
               (mods['animate.clip'], 'clip_xlm_roberta_vit_h_14',
                functools.partial(mods['animate.clip'].clip_xlm_roberta_vit_h_14, **CLIP))]
    saved = [(module, name, getattr(module, name)) for module, name, _ in patches]
    try:
        for module, name, value in patches:
            setattr(module, name, value)
        yield mods
    finally:
        for module, name, value in saved:
            setattr(module, name, value)


def _vae22_factory(original):
    def build(pretrained_path=None, z_dim=16, dim=160, device='cpu', **kwargs):
        return original(pretrained_path=pretrained_path, z_dim=z_dim, dim=VAE22['dim'], dec_dim=VAE22['dec_dim'],
                        device=device, **kwargs)
    return build


def t5_vocab_for(tokenizer_dir):
    from transformers import AutoTokenizer
    return -(-len(AutoTokenizer.from_pretrained(str(tokenizer_dir))) // 64) * 64


# --------------------------------------------------------------------------------------------
# Official folders
# --------------------------------------------------------------------------------------------

FILES = {'t5': 'models_t5_umt5-xxl-enc-bf16.pth', 't5_tokenizer': 'google/umt5-xxl',
         'vae_wan2.1': 'Wan2.1_VAE.pth', 'vae_wan2.2': 'Wan2.2_VAE.pth',
         'clip': 'models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth', 'clip_tokenizer': 'xlm-roberta-large'}

# variant id -> (model_type, in_dim, out_dim, VAE, experts, CLIP)
VARIANTS = {
    'wan2.1-t2v-1.3b': ('t2v', 16, 16, 'wan2.1', ('main',), False),
    'wan2.1-t2v-14b': ('t2v', 16, 16, 'wan2.1', ('main',), False),
    'wan2.1-i2v-14b': ('i2v', 36, 16, 'wan2.1', ('main',), True),
    'wan2.2-t2v-a14b': ('t2v', 16, 16, 'wan2.1', ('high_noise', 'low_noise'), False),
    'wan2.2-i2v-a14b': ('i2v', 36, 16, 'wan2.1', ('high_noise', 'low_noise'), False),
    'wan2.2-ti2v-5b': ('ti2v', 48, 48, 'wan2.2', ('main',), False),
}
SINGLE_FILE = ('wan2.1-t2v-1.3b',)     # the others ship sharded transformers


def write_official_folder(root, variant_id, seed=0):
    """The variant's official Wan-AI folder under `root`, written as the releases are: WanModel.save_pretrained
    (config.json with the config the class registers, safetensors in float32, sharded with an index except for
    the 1.3B; A14B: high_noise_model/ and low_noise_model/), the VAE and encoders as `torch.save` state dicts
    (T5 in bfloat16, CLIP in float16), and the tokenizers. Returns {'root', 'transformers': {expert: model}}."""
    from models.wan.tiny import write_umt5_tokenizer, write_xlmr_tokenizer
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    model_type, in_dim, out_dim, vae_kind, experts, uses_clip = VARIANTS[variant_id]
    write_umt5_tokenizer(root / FILES['t5_tokenizer'])
    vocab = t5_vocab_for(root / FILES['t5_tokenizer'])
    text_dim = T5['dim']
    base = seed * 100 + sorted(VARIANTS).index(variant_id) * 10
    models = {}
    for i, expert in enumerate(experts):
        if uses_clip:
            model = wan21_i2v_transformer(text_dim, CLIP['vision_dim'], base + i)
        else:
            model = transformer(model_type, in_dim, out_dim, text_dim, base + i)
        folder = root / f'{expert}_model' if len(experts) == 2 else root
        shard = None if variant_id in SINGLE_FILE else _bytes(model) // 2 + 1
        model.save_pretrained(str(folder), safe_serialization=True,
                              **({'max_shard_size': shard} if shard else {}))
        models[expert] = model
    if len(experts) == 2:
        (root / 'configuration.json').write_text('{"framework": "Pytorch", "task": "%s-video"}\n' % model_type)
    torch.save(vae(vae_kind, base + 5).state_dict(), root / FILES[f'vae_{vae_kind}'])
    torch.save({k: v.to(torch.bfloat16) for k, v in t5_encoder(vocab, base + 6).state_dict().items()}, root / FILES['t5'])
    if uses_clip:
        torch.save({k: v.to(torch.float16) for k, v in clip(base + 7).state_dict().items()}, root / FILES['clip'])
        write_xlmr_tokenizer(root / FILES['clip_tokenizer'])
    return {'root': root, 'transformers': models, 'vae': vae_kind}


def _bytes(model):
    return sum(p.numel() * p.element_size() for p in model.parameters())


def relative_error(ours, theirs):
    """max |ours - theirs| / max |theirs|, in float64."""
    ours, theirs = ours.double(), theirs.double()
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    return ((ours - theirs).abs().max() / theirs.abs().max()).item()
