"""Trim a clip to a time range, or split it at scene changes, into new clips beside it.

    trim(folder, 'long.mp4', 2.0, 7.5)                     # -> 'long_2.00-7.50s.mp4' (+ its caption)
    find_scenes(path, threshold=10)                        # [4.21, 9.87, ...] seconds (FFmpeg scdet)
    split(folder, 'long.mp4', threshold=10, min_length=2)  # -> 'long_scene01.mp4', 'long_scene02.mp4', ...

The original is never touched. New clips are H.264 (yuv420p, source frame timing kept, no audio),
encoded to a temporary file in the dataset's .studio/ folder and moved in atomically under a free name;
each gets a copy of the original's caption (as its sidecar .txt) and its caption provenance.
"""

import re
import secrets
from pathlib import Path

from ..errors import BadRequest, Invalid
from .datasets import STUDIO_DIR, fit_name, place_file
from .media_previews import probe_checked, run_ffmpeg

SCENE_RE = re.compile(r'lavfi\.scd\.time:\s*([0-9.]+)')
DETECT_MAX_WIDTH = 480              # scene detection runs on frames scaled down to this width (speed)
ENCODE = ['-c:v', 'libx264', '-preset', 'medium', '-crf', '16', '-pix_fmt', 'yuv420p', '-fps_mode', 'passthrough',
          '-movflags', '+faststart', '-an', '-sn', '-dn', '-map_metadata', '-1']
EVEN = "crop='trunc(iw/2)*2':'trunc(ih/2)*2'"


def _video(path):
    info = probe_checked(path, Invalid, field='file')
    if info.kind != 'video':
        raise Invalid(f'{Path(path).name} is an image; only videos can be trimmed or split', field='file')
    return info


def _encode(src, folder, start, end, name, caption_copy):
    """Encode [start, end) of src into a new clip `name` in folder; returns the final file name."""
    tmp_dir = folder / STUDIO_DIR / 'tmp'
    tmp_dir.mkdir(parents=True, exist_ok=True)
    tmp = tmp_dir / f'{secrets.token_hex(6)}.mp4'
    try:
        run_ffmpeg(['-v', 'error', '-ss', f'{start:.6f}', '-i', src, '-t', f'{end - start:.6f}', '-map', '0:v:0',
                    '-vf', EVEN, *ENCODE, '-f', 'mp4', tmp], f'{Path(src).name} [{start:.2f}-{end:.2f}s]')
        target = place_file(tmp, folder, name, companions=('.txt',))
    finally:
        tmp.unlink(missing_ok=True)
    caption_copy(target)
    return target.name


def trim(folder, src, start, end, caption_copy=lambda target: None):
    """A new clip holding [start, end) seconds of src."""
    info = _video(src)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (start, end)):
        raise BadRequest('start and end must be numbers of seconds', field='start')
    end = min(float(end), info.duration)
    if not 0 <= start < end or end - start < 1.0 / info.fps:
        raise Invalid(f'{src.name}: cannot cut {start:g}-{end:g} s from a clip of {info.duration:.3f} s '
                      f'(need 0 <= start < end, at least one frame)', field='start')
    name = fit_name(Path(src).stem, f'_{start:.2f}-{end:.2f}s.mp4', room=16)
    return {'file': _encode(src, folder, start, end, name, caption_copy), 'start': start, 'end': end}


def find_scenes(src, threshold=10.0):
    """Times (seconds) where FFmpeg's scdet filter sees a scene change scoring above `threshold` (0-100)."""
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not 0 < threshold <= 100:
        raise BadRequest('threshold must be a number in (0, 100]: the scene-change score (scdet) to cut at',
                         field='threshold')
    vf = f"scale='min({DETECT_MAX_WIDTH},iw)':-2,scdet=threshold={threshold}"
    err = run_ffmpeg(['-v', 'info', '-nostats', '-i', src, '-map', '0:v:0', '-an', '-vf', vf, '-f', 'null', '-'],
                     f'{Path(src).name}: scene detection')
    return sorted({round(float(t), 3) for t in SCENE_RE.findall(err)})


def segments(duration, cuts, min_length):
    """[(start, end)] between cuts; a piece shorter than min_length joins the one before it (the first
    joins the next), so every piece is at least min_length unless the whole clip is shorter."""
    bounds = [0.0] + [c for c in sorted(cuts) if 0.0 < c < duration] + [duration]
    pieces = [[a, b] for a, b in zip(bounds, bounds[1:]) if b > a]
    merged = []
    for piece in pieces:
        if merged and (piece[1] - piece[0] < min_length or merged[-1][1] - merged[-1][0] < min_length):
            merged[-1][1] = piece[1]
        else:
            merged.append(piece)
    return [tuple(p) for p in merged]


def split(folder, src, threshold=10.0, min_length=1.0, cuts=None, dry_run=False, caption_copy=lambda t: None):
    """Cut src at scene changes (or at the given `cuts`, seconds) into clips of at least min_length."""
    info = _video(src)
    if not isinstance(min_length, (int, float)) or isinstance(min_length, bool) or min_length < 0:
        raise BadRequest('min_length must be a number of seconds (0 or more)', field='min_length')
    if cuts is None:
        cuts = find_scenes(src, threshold)
    elif not isinstance(cuts, list) or not all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in cuts):
        raise BadRequest('cuts must be a list of times in seconds', field='cuts')
    pieces = segments(info.duration, cuts, min_length)
    out = {'duration': info.duration, 'cuts': cuts, 'segments': [{'start': a, 'end': b, 'file': None} for a, b in pieces]}
    if dry_run or len(pieces) < 2:
        out['note'] = None if len(pieces) > 1 else 'no scene change found: nothing to split'
        return out
    stem = Path(src).stem
    for k, seg in enumerate(out['segments'], start=1):
        seg['file'] = _encode(src, folder, seg['start'], seg['end'], fit_name(stem, f'_scene{k:02d}.mp4', room=16), caption_copy)
    return out
