"""Load the networks of a Wan checkpoint located by models/wan/checkpoints.py.

The `load_*` functions build each network on the meta device, read tensors one at a time (safetensors,
or `torch.load(mmap=True)` for `.pth`), cast each to the requested dtype as it is read, and assign them
strictly: a missing or unexpected tensor is an error naming the file and the keys. One code path reads
the tiny test models and the real 14B files.

    ckpt = inspect_checkpoint(cfg['model'])          # models.wan.checkpoints
    transformer = load_transformer(ckpt, 'main', torch.bfloat16)
    vae = load_vae(ckpt, torch.bfloat16)
    tokenizer, text_encoder = load_text_encoder(ckpt, torch.bfloat16)

Layouts and key names are described in docs/checkpoint-formats.md.
"""

import math
import re
from pathlib import Path
from typing import Callable

import torch
from safetensors import safe_open

from .checkpoints import CheckpointError, WanCheckpoint, _require
from .keymaps import CLIP_TRANSFORMERS_UNUSED, T5_NAMES, clip_official_to_transformers, vae_diffusers_to_official
from .variants import WanVariant

__all__ = ['load_transformer', 'load_vae', 'load_text_encoder', 'load_image_encoder', 'stored_in',
           'TRANSFORMER_KEEP', 'TEXT_ENCODER_KEEP']

UMT5_MAX_DISTANCE = 128            # relative_attention_max_distance of UMT5 (official T5RelativeEmbedding max_dist)
CLIP_VIT_H_HEAD_DIM = 80           # ViT-H/14: width 1280, 16 heads
DEBUG_HEAD_DIM = 16                # the tiny towers' head width (widths that are not a multiple of 80)
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
# Wan2.2 VAE latent statistics (wan/modules/vae2_2.py); the Wan2.1 ones are AutoencoderKLWan's defaults.
WAN22_LATENTS_MEAN = [
    -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557, -0.1382, 0.0542, 0.2813, 0.0891,
    0.1570, -0.0098, 0.0375, -0.1825, -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502,
    -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.1230, -0.0313, -0.1649, 0.0117, 0.0723,
    -0.2839, -0.2083, -0.0520, 0.3748, 0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667]
WAN22_LATENTS_STD = [
    0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013, 0.8158, 1.0344, 0.5894, 1.0901,
    0.6885, 0.6165, 0.8454, 0.4978, 0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659,
    0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093, 0.5709, 0.6065, 0.6415, 0.4944,
    0.5726, 1.2042, 0.5458, 1.6887, 0.3971, 1.0600, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744]


# Parameters that stay in the compute dtype when a network's weights are stored in float8 (stored_in):
# only the weight matrices of the linear layers inside the blocks are narrowed. The transformer keeps
# its biases, norms, patch / text / time / image embeddings, head (proj_out) and modulation tables
# (scale_shift_table); UMT5 keeps its token embedding, every relative_attention_bias, its norms, and the
# feed-forward output projections `wo` (transformers' UMT5 casts the hidden states to wo's dtype before it).
TRANSFORMER_KEEP = ('bias', 'norm', 'patch_embedding', 'condition_embedder', 'proj_out', 'scale_shift_table')
TEXT_ENCODER_KEEP = ('shared', 'embed_tokens', 'relative_attention_bias', 'layer_norm', '.wo.')


def stored_in(storage_dtype, keep, blocks='blocks.'):
    """A loader's dtype_for: `storage_dtype` for the weight matrices under `blocks` whose names contain
    none of `keep`, None (the compute dtype) for everything else."""
    def dtype_for(name):
        if name.startswith(blocks) and name.endswith('.weight') and not any(k in name for k in keep):
            return storage_dtype
        return None
    return dtype_for


class StoredLinear(torch.nn.Linear):
    """A Linear whose weight is stored in a narrower dtype than its input (float8): the weight is cast to
    the input's dtype as the layer runs; the stored copy never changes."""

    def forward(self, x):
        return torch.nn.functional.linear(x, self.weight.to(x.dtype), self.bias)


def _cast_on_forward(model, dtype):
    """Every Linear whose weight is not stored in `dtype` computes in it (its weight cast as it runs)."""
    for module in model.modules():
        if type(module) is torch.nn.Linear and module.weight.dtype != dtype:
            module.__class__ = StoredLinear
    return model


# --------------------------------------------------------------------------------------------
# Reading tensors
# --------------------------------------------------------------------------------------------

def _iter_tensors(files):
    """(file, name, tensor) one at a time; .pth files are memory-mapped, so nothing is read twice."""
    for f in files:
        f = Path(f)
        _require(f, 'weights')
        if f.suffix == '.safetensors':
            try:
                handle = safe_open(str(f), framework='pt', device='cpu')
            except Exception as e:
                raise CheckpointError(f'{f} is not a readable safetensors file: {e}') from None
            with handle:
                for name in handle.keys():
                    yield f, name, handle.get_tensor(name)
        else:
            try:
                state = torch.load(f, map_location='cpu', mmap=True, weights_only=True)
            except Exception as e:
                raise CheckpointError(f'{f} is not a readable PyTorch checkpoint: {e}') from None
            if isinstance(state, dict) and isinstance(state.get('state_dict'), dict):
                state = state['state_dict']
            if not isinstance(state, dict):
                raise CheckpointError(f'{f}: expected a dict of tensors, found {type(state).__name__}')
            for name, tensor in state.items():
                yield f, name, tensor


def _read(files, dtype, rename: Callable = None, dtype_for: Callable = None) -> dict:
    """Read tensors, renaming each (None = drop) and casting floating ones to dtype as they arrive."""
    out = {}
    for f, name, tensor in _iter_tensors(files):
        new = rename(name) if rename else name
        if new is None:
            continue
        if tensor.is_floating_point():
            tensor = tensor.to((dtype_for(new) if dtype_for else None) or dtype)
        out[new] = tensor
    return out


def _per_key(convert):
    """Turn a whole-state-dict converter shipped by diffusers into a per-name rename."""
    def rename(name):
        return next(iter(convert({name: None})))
    return rename


def _assign(model, state: dict, files, what: str, drop_unused=()):
    """Strict assign of `state` into a meta-built model; errors list missing and unexpected keys."""
    expected = set(model.state_dict().keys())
    got = {k: v for k, v in state.items() if not k.startswith(tuple(drop_unused))} if drop_unused else state
    missing = sorted(expected - set(got))
    unexpected = sorted(set(got) - expected)
    if missing or unexpected:
        where = ', '.join(str(f) for f in files[:3]) + (' ...' if len(files) > 3 else '')
        lines = [f'{where}: the {what} does not match the expected network']
        if missing:
            lines.append(f'  {len(missing)} missing: {", ".join(missing[:8])}{" ..." if len(missing) > 8 else ""}')
        if unexpected:
            lines.append(f'  {len(unexpected)} unexpected: {", ".join(unexpected[:8])}{" ..." if len(unexpected) > 8 else ""}')
        raise CheckpointError('\n'.join(lines))
    shapes = model.state_dict()
    bad = [f'{k} {tuple(got[k].shape)} (expected {tuple(shapes[k].shape)})' for k in expected if got[k].shape != shapes[k].shape]
    if bad:
        raise CheckpointError(f'{files[0]}: {what} tensor shapes differ: {"; ".join(sorted(bad)[:6])}')
    model.load_state_dict(got, strict=True, assign=True)
    return model


def _empty(factory):
    from accelerate import init_empty_weights
    with init_empty_weights():
        return factory()


# --------------------------------------------------------------------------------------------
# Loaders
# --------------------------------------------------------------------------------------------

def load_transformer(ckpt: WanCheckpoint, expert: str, dtype, dtype_for: Callable | None = None):
    """The diffusers WanTransformer3DModel of one expert ('main', 'high_noise', 'low_noise').

    dtype_for(name) may return a dtype per parameter (diffusers name), e.g. `stored_in(torch.float8_e4m3fn,
    TRANSFORMER_KEEP)` to store the blocks' linear weights in float8 and keep the rest in dtype (None falls
    back to dtype); linear layers whose weights are stored narrower compute in dtype.
    """
    from diffusers import WanTransformer3DModel
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers
    if expert not in ckpt.transformers:
        raise CheckpointError(f'expert {expert!r} is not loaded from {ckpt.root}; this checkpoint has {sorted(ckpt.transformers)}')
    src = ckpt.transformers[expert]
    rename = None if src.kind == 'diffusers' else _per_key(convert_wan_transformer_to_diffusers)
    state = _read(src.files, dtype, rename, dtype_for)
    model = _empty(lambda: WanTransformer3DModel.from_config(ckpt.transformer_config[expert]))
    return _cast_on_forward(_assign(model, state, src.files, f'{expert} transformer'), dtype)


def _vae_config_from_official(state: dict, variant: WanVariant, path) -> dict:
    try:
        conv_in = state['encoder.conv1.weight'].shape
        head_out = state['decoder.head.2.weight'].shape
        z_dim = state['conv2.weight'].shape[0]
    except KeyError as e:
        raise CheckpointError(f'{path}: {e.args[0]} not found; this is not a Wan VAE checkpoint') from None
    residual = variant.vae == 'wan2.2'
    config = {'base_dim': conv_in[0], 'decoder_base_dim': head_out[1], 'z_dim': z_dim, 'is_residual': residual,
              'in_channels': conv_in[1], 'out_channels': head_out[0], 'temperal_downsample': [False, True, True],
              'scale_factor_temporal': variant.vae_stride[0], 'scale_factor_spatial': variant.vae_stride[1]}
    if residual:
        config.update(patch_size=2, latents_mean=WAN22_LATENTS_MEAN[:z_dim], latents_std=WAN22_LATENTS_STD[:z_dim])
    return config


def load_vae(ckpt: WanCheckpoint, dtype):
    """The diffusers AutoencoderKLWan (Wan2.1 VAE, or Wan2.2 VAE with is_residual) in eval mode."""
    from diffusers import AutoencoderKLWan
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers
    src = ckpt.vae
    if src.kind == 'diffusers':
        state, config = _read(src.files, dtype), src.config
        model = _empty(lambda: AutoencoderKLWan.from_config(config))
    else:
        raw = _read(src.files, dtype)
        config = _vae_config_from_official(raw, ckpt.variant, src.files[0])
        model = _empty(lambda: AutoencoderKLWan.from_config(config))
        if config['is_residual']:
            to_diffusers = {vae_diffusers_to_official(k, residual=True): k for k in model.state_dict()}
            state = {to_diffusers.get(k, k): v for k, v in raw.items()}
        else:
            state = convert_wan_vae_to_diffusers(raw)
    return _assign(model, state, src.files, f'{ckpt.variant.vae} VAE').eval()


def _umt5_config(state: dict, path):
    from transformers import UMT5Config
    try:
        vocab, d_model = state['shared.weight'].shape
        buckets, heads = state['encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight'].shape
        d_ff = state['encoder.block.0.layer.1.DenseReluDense.wi_0.weight'].shape[0]
        inner = state['encoder.block.0.layer.0.SelfAttention.q.weight'].shape[0]
    except KeyError as e:
        raise CheckpointError(f'{path}: {e.args[0]} not found; this is not a UMT5 encoder') from None
    layers = len({int(m[1]) for k in state if (m := re.match(r'encoder\.block\.(\d+)\.', k))})
    return UMT5Config(vocab_size=vocab, d_model=d_model, d_kv=inner // heads, d_ff=d_ff, num_layers=layers,
                      num_heads=heads, relative_attention_num_buckets=buckets,
                      relative_attention_max_distance=UMT5_MAX_DISTANCE, feed_forward_proj='gated-gelu',
                      layer_norm_epsilon=1e-6, is_encoder_decoder=False, tie_word_embeddings=False)


def load_text_encoder(ckpt: WanCheckpoint, dtype, dtype_for: Callable | None = None):
    """(tokenizer, transformers UMT5EncoderModel in eval mode); dtype_for (transformers names) as for
    load_transformer, e.g. `stored_in(torch.float8_e4m3fn, TEXT_ENCODER_KEEP, 'encoder.block.')`."""
    from transformers import AutoTokenizer, UMT5Config, UMT5EncoderModel
    src = ckpt.text_encoder
    rename = (lambda k: T5_NAMES.forward(k) or k) if src.kind == 'official' else None
    state = _read(src.files, dtype, rename, dtype_for)
    # The token embedding is shared with encoder.embed_tokens; files carry either name (or both).
    if 'shared.weight' not in state and 'encoder.embed_tokens.weight' in state:
        state['shared.weight'] = state.pop('encoder.embed_tokens.weight')
    if 'shared.weight' in state:
        state['encoder.embed_tokens.weight'] = state['shared.weight']
    config = UMT5Config.from_dict(src.config) if src.config else _umt5_config(state, src.files[0])
    model = _empty(lambda: UMT5EncoderModel(config))
    model = _cast_on_forward(_assign(model, state, src.files, 'UMT5 text encoder'), dtype).eval()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(ckpt.tokenizer_dir))
    except Exception as e:
        raise CheckpointError(f'{ckpt.tokenizer_dir}: cannot load the UMT5 tokenizer: {e}') from None
    return tokenizer, model


def _clip_config(state: dict, path):
    from transformers import CLIPVisionConfig
    try:
        hidden, _, patch, _ = state['embeddings.patch_embedding.weight'].shape
        positions = state['embeddings.position_embedding.weight'].shape[0]
        mlp = state['encoder.layers.0.mlp.fc1.weight'].shape[0]
    except KeyError as e:
        raise CheckpointError(f'{path}: {e.args[0]} not found; this is not a CLIP vision tower') from None
    layers = len({int(m[1]) for k in state if (m := re.match(r'encoder\.layers\.(\d+)\.', k))})
    head_dim = CLIP_VIT_H_HEAD_DIM if hidden % CLIP_VIT_H_HEAD_DIM == 0 else DEBUG_HEAD_DIM
    return CLIPVisionConfig(hidden_size=hidden, intermediate_size=mlp, num_hidden_layers=layers,
                            num_attention_heads=hidden // head_dim, image_size=math.isqrt(positions - 1) * patch,
                            patch_size=patch, hidden_act='gelu', layer_norm_eps=1e-5)


def load_image_encoder(ckpt: WanCheckpoint, dtype):
    """(transformers CLIPVisionModel, CLIPImageProcessor) for Wan2.1 I2V; None for variants without CLIP.

    Wan uses the penultimate block's tokens: `model(pixel_values, output_hidden_states=True).hidden_states[-2]`.
    """
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel
    if ckpt.image_encoder is None:
        return None
    src = ckpt.image_encoder
    raw = _read(src.files, dtype)
    if src.kind == 'official':
        state, unknown = clip_official_to_transformers(raw)
        state.update({k: raw[k] for k in unknown})        # reported as unexpected below
    else:
        state = {k[len('vision_model.'):] if k.startswith('vision_model.') else k: v for k, v in raw.items()}
    config = CLIPVisionConfig.from_dict(src.config) if src.config else _clip_config(state, src.files[0])
    model = _empty(lambda: CLIPVisionModel(config))
    prefix = 'vision_model.' if next(iter(model.state_dict())).startswith('vision_model.') else ''
    state = {prefix + k: v for k, v in state.items()}
    model = _assign(model, state, src.files, 'CLIP image encoder',
                    drop_unused=tuple(prefix + p for p in CLIP_TRANSFORMERS_UNUSED)).eval()
    if ckpt.image_processor_dir:
        processor = CLIPImageProcessor.from_pretrained(str(ckpt.image_processor_dir))
    else:
        # The official Wan code resizes the frame to exactly image_size x image_size (no crop).
        size = config.image_size
        processor = CLIPImageProcessor(size={'height': size, 'width': size}, do_center_crop=False,
                                       crop_size={'height': size, 'width': size}, resample=3,
                                       image_mean=CLIP_MEAN, image_std=CLIP_STD)
    return model, processor
