"""What is inside a run directory: checkpoints, saved LoRAs, downloadable files."""

import json
import re
from pathlib import Path

from ..errors import NotFound
from ..paths import inside

SAVE_DIR_RE = re.compile(r'^(epoch|step)(\d+)$')


def _state(folder: Path):
    try:
        return json.loads((folder / 'trainer_state.json').read_text(encoding='utf-8'))
    except (OSError, ValueError):
        return None


def list_checkpoints(run_dir: Path):
    """Complete checkpoints (trainer_state.json present: it is written last), oldest first."""
    out = []
    root = run_dir / 'checkpoints'
    if not root.is_dir():
        return out
    for folder in root.iterdir():
        state = _state(folder) if folder.is_dir() else None
        if not isinstance(state, dict):
            continue
        step = state.get('step', state.get('global_step'))
        out.append({'tag': folder.name, 'path': f'checkpoints/{folder.name}',
                    'step': step if isinstance(step, int) else None, 'epoch': state.get('epoch'),
                    'created_at': (folder / 'trainer_state.json').stat().st_mtime})
    return sorted(out, key=lambda c: (c['step'] if c['step'] is not None else -1, c['created_at']))


def newest_checkpoint(run_dir: Path):
    found = list_checkpoints(run_dir)
    return str(run_dir / found[-1]['path']) if found else None


def checkpoint_path(run_dir: Path, tag):
    folder = inside(run_dir / 'checkpoints', tag, 'checkpoint')
    if not isinstance(_state(folder), dict):
        raise NotFound(f'no complete checkpoint {tag!r} in {run_dir.name}', field='checkpoint')
    return folder


EXPERTS = ('high_noise', 'low_noise')


def expert_from_name(rel):
    """The Wan2.2 expert a saved file belongs to by its name (adapter_model_high_noise.safetensors,
    high_noise_model/...), or None for a single-network save."""
    parts = Path(rel).parts[1:]                       # below epochN/ or stepN/
    return next((e for e in EXPERTS for part in parts if e in part), None)


def list_loras(run_dir: Path, artifact_events=None):
    """Saved adapters: epoch<N>/ and step<N>/ folders with .safetensors files (a Wan2.2 two-expert run has
    one file per expert). Each file's expert comes from its artifact event, else from its name."""
    events = {Path(p).as_posix(): e for p, e in (artifact_events or {}).items() if e.get('kind') in ('lora', 'model')}
    out = []
    for folder in run_dir.iterdir() if run_dir.is_dir() else []:
        m = SAVE_DIR_RE.match(folder.name)
        if not m or not folder.is_dir():
            continue
        files = []
        for f in sorted(folder.rglob('*.safetensors')):
            rel = f.relative_to(run_dir).as_posix()
            ev = events.get(rel, {})
            files.append({'path': rel, 'size': f.stat().st_size, 'expert': ev.get('expert') or expert_from_name(rel)})
        if files:
            out.append({'name': folder.name, 'kind': m.group(1), 'number': int(m.group(2)), 'files': files,
                        'created_at': max(run_dir.joinpath(x['path']).stat().st_mtime for x in files)})
    return sorted(out, key=lambda x: x['created_at'])


def file_in_run(run_dir: Path, rel):
    path = inside(run_dir, rel, 'path')
    if not path.is_file():
        raise NotFound(f'no file {rel!r} in this run', field='path')
    return path
