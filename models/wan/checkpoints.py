"""Find and load the parts of a Wan checkpoint from the files users download.

One code path reads the tiny test models and the real 14B files. `inspect_checkpoint` is cheap: it
reads JSON files, file lists and safetensors headers, never weights. The `load_*` functions build each
network on the meta device, read tensors one at a time (safetensors, or `torch.load(mmap=True)` for
`.pth`), cast each to the requested dtype as it is read, and assign them strictly: a missing or
unexpected tensor is an error naming the file and the keys.

    ckpt = inspect_checkpoint(cfg['model'])          # [model] table from utils/config.py
    transformer = load_transformer(ckpt, 'main', torch.bfloat16)
    vae = load_vae(ckpt, torch.bfloat16)
    tokenizer, text_encoder = load_text_encoder(ckpt, torch.bfloat16)

Layouts and key names are described in docs/checkpoint-formats.md.
"""

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .keymaps import (CLIP_TRANSFORMERS_UNUSED, T5_NAMES, clip_official_to_transformers, diffusers_to_official,
                      official_state_dict, vae_diffusers_to_official)
from .variants import EXPERT_FOLDERS, EXPERTS, OFFICIAL_FILES, UnknownVariant, WanVariant, detect_variant, folder_facts

__all__ = ['CheckpointError', 'Source', 'WanCheckpoint', 'inspect_checkpoint', 'source_for_file', 'load_transformer',
           'load_vae', 'load_text_encoder', 'load_image_encoder', 'diffusers_to_official', 'official_state_dict']

COMFY_PREFIX = 'model.diffusion_model.'
DIFFUSERS_WEIGHTS = 'diffusion_pytorch_model.safetensors'
TRANSFORMERS_WEIGHTS = 'model.safetensors'
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


class CheckpointError(Exception):
    """A checkpoint file or folder is missing or not what we expected; the message names both."""


@dataclass
class Source:
    kind: str                      # 'official' | 'diffusers' | 'comfy' | 'transformers' (naming of the tensors)
    files: list                    # weight files (Paths), all of which are read
    config: dict | None = None     # config.json of the component where the layout has one


@dataclass
class WanCheckpoint:
    variant: WanVariant
    layout: str                                   # 'official' | 'diffusers' (the ckpt_path folder)
    root: Path
    transformers: dict                            # expert -> Source ('main', or 'high_noise' / 'low_noise')
    transformer_config: dict                      # expert -> WanTransformer3DModel config kwargs
    vae: Source
    text_encoder: Source
    tokenizer_dir: Path
    image_encoder: Source | None = None
    image_processor_dir: Path | None = None       # Diffusers layout: image_processor/ (official: built in)

    def identity(self) -> dict:
        """Path, size and mtime of every file each cache depends on (text embeddings include the tokenizer)."""
        tok = sorted(p for p in self.tokenizer_dir.iterdir() if p.is_file())
        image = (self.image_encoder.files if self.image_encoder else [])
        if self.image_processor_dir:
            image = image + sorted(p for p in self.image_processor_dir.iterdir() if p.is_file())
        return {
            'variant': self.variant.id,
            'vae': _stat(self.vae.files),
            'text_encoder': _stat(list(self.text_encoder.files) + tok),
            'image_encoder': _stat(image),
            'transformer': {e: _stat(s.files) for e, s in self.transformers.items()},
        }


def _stat(files):
    out = []
    for p in files:
        st = Path(p).stat()
        out.append([str(p), st.st_size, st.st_mtime_ns])
    return out


# --------------------------------------------------------------------------------------------
# Inspection
# --------------------------------------------------------------------------------------------

def _json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise CheckpointError(f'{path} not found ({what})')
    try:
        return json.loads(path.read_text(encoding='utf-8'))
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f'{path} is not valid JSON ({what}): {e}') from None


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise CheckpointError(f'{path} not found ({what})')
    return path


def _weights_in_dir(folder: Path, single: str, what: str) -> list:
    """Weight files of a folder: the shards its index names, else the single file, else every *.safetensors."""
    index_path = folder / f'{single}.index.json'
    if index_path.exists():
        weight_map = _json(index_path, f'{what} shard index').get('weight_map') or {}
        shards = [folder / name for name in sorted(set(weight_map.values()))]
        if not shards:
            raise CheckpointError(f'{index_path} has an empty weight_map ({what})')
        for shard in shards:
            _require(shard, f'{what} shard listed in {index_path.name}')
        return shards
    if (folder / single).exists():
        return [folder / single]
    found = sorted(folder.glob('*.safetensors'))
    if not found:
        raise CheckpointError(f'{folder / single} not found, nor {index_path.name} ({what})')
    return found


def _header_names(files) -> dict:
    """name -> shape from safetensors headers (no weights read); `.pth` files are skipped."""
    from safetensors import safe_open
    shapes = {}
    for f in files:
        if Path(f).suffix != '.safetensors':
            continue
        try:
            with safe_open(str(f), framework='pt', device='cpu') as h:
                for k in h.keys():
                    shapes[k] = tuple(h.get_slice(k).get_shape())
        except Exception as e:  # safetensors raises its own error types for truncated or foreign files
            raise CheckpointError(f'{f} is not a readable safetensors file: {e}') from None
    return shapes


def source_for_file(path, component: str) -> Source:
    """A single weight file given by the user (transformer_path / llm_path, or a ComfyUI file), by its key names.

    component: 'transformer' | 'vae' | 'text_encoder' | 'image_encoder'.
    """
    path = Path(path)
    _require(path, f'{component} file')
    if path.suffix not in ('.safetensors', '.pth', '.pt', '.bin'):
        raise CheckpointError(f'{path}: expected a .safetensors or .pth file for the {component}')
    names = set(_header_names([path])) if path.suffix == '.safetensors' else None
    if names is not None and 'scaled_fp8' in names:
        raise CheckpointError(f'{path} is a "scaled fp8" ComfyUI file, which needs ComfyUI to unscale; '
                              f'use the fp16/bf16 file of the same model')
    if component == 'transformer':
        return Source('comfy', [path])
    if component == 'text_encoder' and names is not None:
        if 'shared.weight' in names or 'encoder.final_layer_norm.weight' in names:
            return Source('transformers', [path])
        if 'token_embedding.weight' in names or 'norm.weight' in names:
            return Source('official', [path])
        raise CheckpointError(f'{path}: neither official Wan T5 names (token_embedding.weight, blocks.N.attn.q.weight) '
                              f'nor transformers UMT5 names (shared.weight, encoder.block.N...) found')
    if component == 'image_encoder' and names is not None and not any(n.startswith('visual.') for n in names):
        return Source('transformers', [path])
    return Source('official' if path.suffix != '.safetensors' else 'comfy', [path])


def _transformer_dir_source(folder: Path) -> Source:
    config = _json(folder / OFFICIAL_FILES['config'], 'transformer config')
    files = _weights_in_dir(folder, DIFFUSERS_WEIGHTS, 'transformer weights')
    kind = 'diffusers' if 'num_attention_heads' in config else 'official'
    return Source(kind, files, config)


def _diffusers_transformer_config(config: dict, shapes: dict, where) -> dict:
    """Official config.json (+ tensor shapes from the safetensors headers) -> WanTransformer3DModel kwargs."""
    if 'num_attention_heads' in config:
        return {k: v for k, v in config.items() if not k.startswith('_')}
    shapes = {k[len(COMFY_PREFIX):] if k.startswith(COMFY_PREFIX) else k: v for k, v in shapes.items()}
    try:
        dim, heads = config['dim'], config['num_heads']
        text = shapes.get('text_embedding.0.weight')
        image = shapes.get('img_emb.proj.1.weight')
        return {
            'patch_size': list(config.get('patch_size', (1, 2, 2))),
            'num_attention_heads': heads,
            'attention_head_dim': dim // heads,
            'in_channels': config['in_dim'],
            'out_channels': config['out_dim'],
            'text_dim': text[1] if text else config.get('text_dim', 4096),
            'freq_dim': config['freq_dim'],
            'ffn_dim': config['ffn_dim'],
            'num_layers': config['num_layers'],
            'cross_attn_norm': config.get('cross_attn_norm', True),
            'qk_norm': 'rms_norm_across_heads' if config.get('qk_norm', True) else None,
            'eps': config['eps'],
            'image_dim': image[1] if image else None,
            'added_kv_proj_dim': dim if image else None,
        }
    except KeyError as e:
        raise CheckpointError(f'{where}: config.json has no {e.args[0]!r}') from None


def _expert_named_by(path: Path):
    """'high_noise' / 'low_noise' if a transformer_path names one expert (folder or ComfyUI file name)."""
    for expert, folder in EXPERT_FOLDERS.items():
        if path.name == folder or expert in path.name.lower():
            return expert
    return None


def _chosen_experts(variant: WanVariant, model_cfg: dict, tp: Path | None) -> tuple:
    expert = model_cfg.get('expert')
    if not variant.two_experts:
        if expert in EXPERTS:
            raise CheckpointError(f"expert = {expert!r}: {variant.id} has a single transformer; expert applies to Wan2.2 A14B")
        return ('main',)
    if tp is None:
        return EXPERTS if expert in (None, 'both') else (expert,)
    named = _expert_named_by(tp)
    if named is None:
        if expert not in EXPERTS:
            raise CheckpointError(f"transformer_path = {str(tp)!r}: cannot tell whether it is the high- or low-noise expert "
                                  f"of {variant.id}; set expert = 'high_noise' or 'low_noise'")
        return (expert,)
    if expert not in (None, named):
        raise CheckpointError(f'transformer_path = {str(tp)!r} is the {named} expert, but expert = {expert!r}; '
                              f'point transformer_path at the other expert or drop transformer_path to load both')
    return (named,)


def inspect_checkpoint(model_cfg: dict) -> WanCheckpoint:
    """Locate every component of the checkpoint described by a resolved [model] table. Reads no weights."""
    if not model_cfg.get('ckpt_path'):
        raise CheckpointError('model.ckpt_path is not set: it must name the official Wan-AI folder or a Diffusers folder')
    root = Path(model_cfg['ckpt_path'])
    if not root.is_dir():
        raise CheckpointError(f'{root} not found (ckpt_path: the official Wan-AI folder or a Diffusers folder)')
    tp = Path(model_cfg['transformer_path']) if model_cfg.get('transformer_path') else None
    if tp is not None and not tp.exists():
        raise CheckpointError(f'{tp} not found (transformer_path)')
    layout = 'diffusers' if (root / 'model_index.json').exists() else 'official'
    inspect = _inspect_diffusers if layout == 'diffusers' else _inspect_official
    variant, default_source, parts = inspect(root, tp)

    experts = _chosen_experts(variant, model_cfg, tp)
    transformers, configs = {}, {}
    for expert in experts:
        if tp is None:
            src = default_source(expert)
        elif tp.is_dir():
            src = _transformer_dir_source(tp)
        else:
            src = source_for_file(tp, 'transformer')
            src.config = default_source(expert, config_only=True).config
        shapes = _header_names(src.files)
        configs[expert] = _diffusers_transformer_config(src.config, shapes, src.files[0])
        _check_transformer_matches(variant, configs[expert], src)
        transformers[expert] = src

    if model_cfg.get('llm_path'):
        parts['text_encoder'] = source_for_file(model_cfg['llm_path'], 'text_encoder')
    else:
        parts['text_encoder'] = parts['text_encoder']()
    return WanCheckpoint(variant=variant, layout=layout, root=root, transformers=transformers,
                         transformer_config=configs, **parts)


def _check_transformer_matches(variant, config, src):
    image = bool(config.get('image_dim'))
    if image != variant.uses_clip:
        want = 'image cross-attention (img_emb, k_img)' if variant.uses_clip else 'no image cross-attention'
        raise CheckpointError(f'{src.files[0]}: the folder is {variant.id}, which has {want}, but this transformer '
                              f'{"has" if image else "has not"}; transformer_path and ckpt_path must be the same model')
    in_ch = config.get('in_channels')
    expected = 36 if variant.i2v_condition else variant.z_dim
    if in_ch != expected:
        raise CheckpointError(f'{src.files[0]}: {variant.id} takes {expected} input channels but this transformer has '
                              f'{in_ch}; transformer_path and ckpt_path must be the same model')


def _tokenizer_dir(folder: Path) -> Path:
    if not folder.is_dir():
        raise CheckpointError(f'{folder} not found (UMT5 tokenizer folder)')
    if not any((folder / f).exists() for f in ('tokenizer.json', 'spiece.model')):
        raise CheckpointError(f'{folder / "tokenizer.json"} not found, nor spiece.model (UMT5 tokenizer)')
    return folder


def _inspect_official(root: Path, tp: Path | None):
    facts = folder_facts(root)
    config_path = root / OFFICIAL_FILES['config']
    if facts['two_experts'] and not config_path.exists():
        config_path = root / EXPERT_FOLDERS['low_noise'] / OFFICIAL_FILES['config']
    if tp is not None and tp.is_dir() and (tp / OFFICIAL_FILES['config']).exists() and not config_path.exists():
        config_path = tp / OFFICIAL_FILES['config']
    config = _json(config_path, 'official transformer config')
    try:
        variant = detect_variant(config, **facts)
    except UnknownVariant as e:
        raise CheckpointError(f'{config_path}: {e}') from None

    def default_source(expert, config_only=False):
        folder = root / EXPERT_FOLDERS[expert] if variant.two_experts else root
        if config_only:
            path = folder / OFFICIAL_FILES['config']
            return Source('official', [], _json(path if path.exists() else config_path, 'transformer config'))
        return _transformer_dir_source(folder)

    parts = {
        'vae': Source('official', [_require(root / OFFICIAL_FILES[f'vae_{variant.vae}'], f'{variant.vae} VAE')]),
        'text_encoder': lambda: Source('official', [_require(root / OFFICIAL_FILES['t5'], 'UMT5 text encoder; or set llm_path')]),
        'tokenizer_dir': _tokenizer_dir(root / OFFICIAL_FILES['t5_tokenizer']),
    }
    if variant.uses_clip:
        parts['image_encoder'] = Source('official', [_require(root / OFFICIAL_FILES['clip'], 'CLIP image encoder')])
    return variant, default_source, parts


def _component_dir(root: Path, name: str, single: str) -> Source:
    folder = root / name
    config = _json(folder / 'config.json', f'{name} config')
    return Source('diffusers' if single == DIFFUSERS_WEIGHTS else 'transformers',
                  _weights_in_dir(folder, single, f'{name} weights'), config)


def _inspect_diffusers(root: Path, tp: Path | None):
    index = _json(root / 'model_index.json', 'Diffusers pipeline index')
    config = _json(root / 'transformer' / 'config.json', 'transformer config')
    try:
        sharded = (root / 'transformer' / OFFICIAL_FILES['transformer_index']).exists()
        variant = detect_variant(config, model_index=index, sharded=sharded)
    except UnknownVariant as e:
        raise CheckpointError(f'{root / "model_index.json"}: {e}') from None
    folders = {'main': 'transformer', 'high_noise': 'transformer', 'low_noise': 'transformer_2'}

    def default_source(expert, config_only=False):
        folder = root / folders[expert]
        if config_only:
            return Source('diffusers', [], _json(folder / 'config.json', 'transformer config'))
        return _component_dir(root, folders[expert], DIFFUSERS_WEIGHTS)

    parts = {
        'vae': _component_dir(root, 'vae', DIFFUSERS_WEIGHTS),
        'text_encoder': lambda: _component_dir(root, 'text_encoder', TRANSFORMERS_WEIGHTS),
        'tokenizer_dir': _tokenizer_dir(root / 'tokenizer'),
    }
    if variant.uses_clip:
        parts['image_encoder'] = _component_dir(root, 'image_encoder', TRANSFORMERS_WEIGHTS)
        parts['image_processor_dir'] = _require(root / 'image_processor' / 'preprocessor_config.json',
                                                'CLIP image processor').parent
    return variant, default_source, parts


# --------------------------------------------------------------------------------------------
# Reading tensors
# --------------------------------------------------------------------------------------------

def _torch():
    import torch
    return torch


def _iter_tensors(files):
    """(file, name, tensor) one at a time; .pth files are memory-mapped, so nothing is read twice."""
    torch = _torch()
    from safetensors import safe_open
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

    dtype_for(name) may return a dtype per parameter (diffusers name), e.g. to keep norms in bf16 while
    storing linear weights in float8; None falls back to dtype.
    """
    from diffusers import WanTransformer3DModel
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers
    if expert not in ckpt.transformers:
        raise CheckpointError(f'expert {expert!r} is not loaded from {ckpt.root}; this checkpoint has {sorted(ckpt.transformers)}')
    src = ckpt.transformers[expert]
    rename = None if src.kind == 'diffusers' else _per_key(convert_wan_transformer_to_diffusers)
    state = _read(src.files, dtype, rename, dtype_for)
    model = _empty(lambda: WanTransformer3DModel.from_config(ckpt.transformer_config[expert]))
    return _assign(model, state, src.files, f'{expert} transformer')


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


def load_text_encoder(ckpt: WanCheckpoint, dtype):
    """(tokenizer, transformers UMT5EncoderModel in eval mode)."""
    from transformers import AutoTokenizer, UMT5Config, UMT5EncoderModel
    src = ckpt.text_encoder
    rename = (lambda k: T5_NAMES.forward(k) or k) if src.kind == 'official' else None
    state = _read(src.files, dtype, rename)
    # The token embedding is shared with encoder.embed_tokens; files carry either name (or both).
    if 'shared.weight' not in state and 'encoder.embed_tokens.weight' in state:
        state['shared.weight'] = state.pop('encoder.embed_tokens.weight')
    if 'shared.weight' in state:
        state['encoder.embed_tokens.weight'] = state['shared.weight']
    config = UMT5Config.from_dict(src.config) if src.config else _umt5_config(state, src.files[0])
    model = _empty(lambda: UMT5EncoderModel(config))
    model = _assign(model, state, src.files, 'UMT5 text encoder').eval()
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
