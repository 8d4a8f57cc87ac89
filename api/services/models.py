"""Checkpoints the studio can train on, found under the model roots.

A folder is a checkpoint if it is an official Wan-AI folder (config.json, or high_noise_model/ and
low_noise_model/ for Wan2.2 A14B, next to Wan2.1_VAE.pth or Wan2.2_VAE.pth) or a Diffusers folder
(model_index.json). The variant comes from the trainer's own inspector (models.wan.checkpoints) when
it is there; until then `inspect_variant` reads the same facts from the files. Keep that one call.
"""

import json
import threading
import time
from pathlib import Path

VAE_FILES = ('Wan2.1_VAE.pth', 'Wan2.2_VAE.pth')
# (dim, in_dim) of the official configs -> size label
SIZES = {1536: '1.3B', 3072: '5B', 5120: '14B'}
TASKS_BY_IN_DIM = {16: 't2v', 36: 'i2v', 48: 'ti2v'}
SCAN_DEPTH = 2
CACHE_S = 5.0


def _json(path):
    try:
        return json.loads(Path(path).read_text(encoding='utf-8'))
    except (OSError, ValueError):
        return None


def layout_of(folder: Path):
    """'wan' (official), 'diffusers', or None."""
    if (folder / 'model_index.json').is_file():
        return 'diffusers'
    has_vae = any((folder / v).is_file() for v in VAE_FILES)
    has_cfg = (folder / 'config.json').is_file() or (folder / 'high_noise_model' / 'config.json').is_file()
    return 'wan' if has_vae and has_cfg else None


def _variant_from_files(folder: Path, layout):
    if layout == 'diffusers':
        t = _json(folder / 'transformer' / 'config.json') or {}
        dim = (t.get('num_attention_heads') or 0) * (t.get('attention_head_dim') or 0)
        in_dim = t.get('in_channels')
        two_experts = (folder / 'transformer_2').is_dir()
        family = 'wan2.2' if two_experts or in_dim == 48 else 'wan2.1'
    else:
        two_experts = (folder / 'high_noise_model').is_dir()
        t = _json(folder / ('high_noise_model/config.json' if two_experts else 'config.json')) or {}
        dim, in_dim = t.get('dim'), t.get('in_dim')
        family = 'wan2.2' if two_experts or (folder / 'Wan2.2_VAE.pth').is_file() else 'wan2.1'
    task = t.get('model_type') or TASKS_BY_IN_DIM.get(in_dim, 't2v')
    size = 'A14B' if two_experts else SIZES.get(dim, f'dim{dim}' if dim else 'unknown')
    return {'id': f'{family}-{task}-{size}', 'family': family, 'task': task, 'size': size,
            'experts': ['high_noise', 'low_noise'] if two_experts else [],
            'size_multiple': 32 if task == 'ti2v' else 16, 'inspector': 'files'}


def inspect_variant(folder: Path, layout):
    """Variant facts of a checkpoint folder: id and size_multiple at least."""
    try:
        from models.wan.checkpoints import inspect_checkpoint
    except ImportError:
        return _variant_from_files(folder, layout)
    ckpt = inspect_checkpoint({'type': 'wan', 'ckpt_path': str(folder)})
    v = ckpt.variant
    return {'id': v.id, 'size_multiple': v.size_multiple, 'inspector': 'models.wan.checkpoints',
            **{k: getattr(v, k) for k in ('family', 'task', 'size', 'experts') if hasattr(v, k)}}


class ModelCatalog:
    def __init__(self, roots):
        self.roots = [Path(r) for r in roots]
        self._lock = threading.Lock()
        self._cache = (0.0, [])

    def list(self):
        with self._lock:
            at, models = self._cache
            if time.monotonic() - at > CACHE_S:
                models = [m for root in self.roots for m in self._scan(root)]
                self._cache = (time.monotonic(), models)
            return models

    def _scan(self, root):
        out = []
        if not root.is_dir():
            return out
        frontier = [(root, 0)]
        while frontier:
            folder, depth = frontier.pop(0)
            try:
                children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith('.'))
            except OSError:
                continue
            for child in children:
                layout = layout_of(child)
                if layout:
                    out.append(self.describe(child, root, layout))
                elif depth + 1 < SCAN_DEPTH:
                    frontier.append((child, depth + 1))
        return out

    def describe(self, folder, root, layout):
        entry = {'name': str(folder.relative_to(root)), 'path': str(folder), 'root': str(root), 'layout': layout,
                 'variant': None, 'error': None}
        try:
            entry['variant'] = inspect_variant(folder, layout)
        except Exception as e:      # a broken checkpoint is listed with its error, never hides the others
            entry['error'] = f'{type(e).__name__}: {e}'
        return entry

    def find(self, path):
        """The catalog entry of a checkpoint path, or None."""
        try:
            p = str(Path(path).resolve())
        except (OSError, RuntimeError):
            return None
        return next((m for m in self.list() if m['path'] == p), None)
