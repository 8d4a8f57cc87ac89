"""Find the parts of a Wan checkpoint in the files users download, without reading weights.

`inspect_checkpoint` is cheap: it reads JSON files, file lists and safetensors headers, never weights,
and imports no torch (the studio calls it to tell what a model folder is). Loading the networks is
models/wan/weights.py.

    ckpt = inspect_checkpoint(cfg['model'])          # [model] table from utils/config.py
    ckpt.variant, ckpt.transformers, ckpt.vae ...    # what each component is and which files hold it

Layouts and key names are described in docs/checkpoint-formats.md.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from .variants import EXPERT_FOLDERS, EXPERTS, OFFICIAL_FILES, UnknownVariant, WanVariant, detect_variant, folder_facts

__all__ = ['CheckpointError', 'Source', 'WanCheckpoint', 'inspect_checkpoint', 'source_for_file']

COMFY_PREFIX = 'model.diffusion_model.'
DIFFUSERS_WEIGHTS = 'diffusion_pytorch_model.safetensors'
TRANSFORMERS_WEIGHTS = 'model.safetensors'


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
