"""Checkpoints the studio can train on, found under the model roots.

A folder is a checkpoint if it is an official Wan-AI folder (config.json, or high_noise_model/ and
low_noise_model/ for Wan2.2 A14B, next to Wan2.1_VAE.pth or Wan2.2_VAE.pth) or a Diffusers folder
(model_index.json). What it is (variant, size multiple) comes from the trainer's own inspector,
models.wan.checkpoints.inspect_checkpoint, called in one place: `inspect_variant`. A folder the studio
downloaded also has a manifest, `.odeo-model.json` (MANIFEST): where each file came from (repo, commit)
and its sha256; `source` in a listing entry is that manifest's summary, `size_bytes` the folder's size.

TAEHV files (tiny autoencoders for live previews, models/taehv/) are found apart: any `.pth` /
`.safetensors` of at most TAEHV_MAX_BYTES under a root whose names and shapes are the published layout
(`peek_taehv`: a safetensors header or a memory-mapped .pth, no weights read); listed with their latent
channels (16: Wan2.1 VAE, 48: Wan2.2 TI2V-5B VAE) so a task is offered only the ones its model can use.
"""

import json
import os
import threading
import time
from pathlib import Path

from ..filecache import FileCache
from ..paths import find_folders

VAE_FILES = ('Wan2.1_VAE.pth', 'Wan2.2_VAE.pth')
MANIFEST = '.odeo-model.json'
SCAN_DEPTH = 3              # <root>/<name>, <root>/<group>/<name>, <root>/tiny/<variant>/<layout>
CACHE_S = 5.0
TAEHV_SUFFIXES = ('.pth', '.safetensors')
TAEHV_MAX_BYTES = 256 << 20       # the published taew2_1 / taew2_2 are ~ 20 MB; Wan's own files are far larger


def layout_of(folder: Path):
    """'wan' (official), 'diffusers', or None."""
    if (folder / 'model_index.json').is_file():
        return 'diffusers'
    has_vae = any((folder / v).is_file() for v in VAE_FILES)
    has_cfg = (folder / 'config.json').is_file() or (folder / 'high_noise_model' / 'config.json').is_file()
    return 'wan' if has_vae and has_cfg else None


def inspect_variant(folder: Path):
    """Variant facts of a checkpoint folder (reads JSON and safetensors headers, no weights)."""
    from models.wan.checkpoints import inspect_checkpoint
    v = inspect_checkpoint({'type': 'wan', 'ckpt_path': str(folder)}).variant
    return {'id': v.id, 'task': v.task, 'experts': list(v.experts), 'size_multiple': v.size_multiple,
            'framerate': v.framerate, 'vae': v.vae}


class ModelCatalog:
    def __init__(self, roots):
        self.roots = [Path(r) for r in roots]
        self._lock = threading.Lock()
        self._cache = (0.0, [])
        self._taehv_cache = (0.0, [])
        self._peeked = FileCache()      # file -> its TAEHV config or None, until it changes

    def taehvs(self):
        """TAEHV files under the roots: [{name, path, root, latent_channels, patch_size, vae, size_bytes}]."""
        with self._lock:
            at, found = self._taehv_cache
            if time.monotonic() - at > CACHE_S:
                found = [e for root in self.roots for e in scan_taehv(root, peek=self._peek)]
                self._taehv_cache = (time.monotonic(), found)
            return found

    def _peek(self, path):
        from models.taehv.model import peek_taehv
        return self._peeked.get(path, peek_taehv)

    def find_taehv(self, path):
        try:
            p = str(Path(path).resolve())
        except (OSError, RuntimeError, TypeError):
            return None
        return next((t for t in self.taehvs() if t['path'] == p), None)

    def list(self):
        with self._lock:
            at, models = self._cache
            if time.monotonic() - at > CACHE_S:
                models = [m for root in self.roots for m in self._scan(root)]
                self._cache = (time.monotonic(), models)
            return models

    def _scan(self, root):
        return [self.describe(folder, root, layout) for folder, layout in find_folders(root, layout_of, SCAN_DEPTH)]

    def describe(self, folder, root, layout):
        entry = {'name': str(folder.relative_to(root)), 'path': str(folder), 'root': str(root), 'layout': layout,
                 'variant': None, 'error': None, 'size_bytes': folder_size(folder), 'source': source_of(folder)}
        try:
            entry['variant'] = inspect_variant(folder)
        except Exception as e:      # a broken checkpoint is listed with its error and hides no other
            entry['error'] = f'{type(e).__name__}: {e}'
        return entry

    def refresh(self):
        """Forget the cached listing (after a download finished or a model was deleted)."""
        with self._lock:
            self._cache = (0.0, [])
            self._taehv_cache = (0.0, [])

    def default(self):
        """The model a new task starts with: a working one, single-expert text-to-video first."""
        ok = [m for m in self.list() if m['variant']]
        rank = lambda m: (m['variant']['task'] != 't2v', len(m['variant']['experts']) > 1,  # noqa: E731
                          m['layout'] != 'wan', m['name'])
        return min(ok, key=rank) if ok else None

    def find(self, path):
        """The catalog entry of a checkpoint path, or None."""
        try:
            p = str(Path(path).resolve())
        except (OSError, RuntimeError):
            return None
        return next((m for m in self.list() if m['path'] == p), None)

    def containing(self, path):
        """The catalog entry of the model folder a path lies in (the folder itself or a file inside), or None."""
        try:
            p = Path(path).resolve()
        except (OSError, RuntimeError, TypeError):
            return None
        return next((m for m in self.list() if p == Path(m['path']) or Path(m['path']) in p.parents), None)


def scan_taehv(root, depth=SCAN_DEPTH + 1, peek=None):
    """TAEHV files under root, at most `depth` folders down. peek(path) -> config or None (default peek_taehv)."""
    if peek is None:
        from models.taehv.model import peek_taehv as peek
    root = Path(root)
    out = []
    for dirpath, dirs, names in os.walk(root):
        here = Path(dirpath)
        level = len(here.relative_to(root).parts)
        dirs[:] = sorted(d for d in dirs if not d.startswith('.')) if level < depth else []
        for n in sorted(names):
            path = here / n
            try:
                size = path.stat().st_size
            except OSError:
                continue
            if not n.endswith(TAEHV_SUFFIXES) or size > TAEHV_MAX_BYTES:
                continue
            cfg = peek(path)
            if cfg is not None:
                out.append({'name': str(path.relative_to(root)), 'path': str(path.resolve()), 'root': str(root),
                            'latent_channels': cfg.latent_channels, 'patch_size': cfg.patch_size,
                            'vae': 'wan2.2' if cfg.latent_channels == 48 else 'wan2.1', 'size_bytes': size})
    return out


def model_sources(catalog, main_doc):
    """For a run's job record: each downloaded model its [model] paths lie in, with repo and commit."""
    out = {}
    model = (main_doc or {}).get('model') or {}
    for key, value in model.items():
        entry = catalog.containing(value) if key.endswith('_path') and isinstance(value, str) else None
        if entry and entry['source'] and entry['path'] not in out:
            out[entry['path']] = {'path': entry['path'], 'name': entry['name'], 'layout': entry['source']['layout'],
                                  'sources': entry['source']['sources']}
    return list(out.values())


def read_manifest(folder: Path):
    try:
        return json.loads((Path(folder) / MANIFEST).read_text(encoding='utf-8'))
    except (OSError, ValueError):
        return None


def source_of(folder: Path):
    """Where a downloaded model came from (its manifest, without the file list), or None."""
    m = read_manifest(folder)
    if not isinstance(m, dict):
        return None
    return {'kind': m.get('kind'), 'variant': m.get('variant'), 'layout': m.get('layout'),
            'downloaded_at': m.get('downloaded_at'), 'job_id': m.get('job_id'),
            'sources': [{'repo': s.get('repo'), 'revision': s.get('revision'), 'commit': s.get('commit')}
                        for s in m.get('sources', [])]}


def folder_size(folder: Path) -> int:
    total = 0
    for dirpath, _, names in os.walk(folder):
        for n in names:
            try:
                total += os.lstat(os.path.join(dirpath, n)).st_size
            except OSError:
                pass
    return total
