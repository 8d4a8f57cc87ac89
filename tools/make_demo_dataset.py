"""Write the built-in demo dataset: tiny synthetic clips and images that train on a CPU.

    python tools/make_demo_dataset.py [--out data/datasets/demo] [--force]     (from the repository root)

Eight H.264 clips (moving coloured shapes, 2-3 s, 96x64 / 64x96 / 80x80, at 16 and 24 fps) and four
PNG / JPEG images, each with a sidecar caption, plus a dataset.toml (resolutions [64], frame buckets
[1, 9, 17]). Deterministic (same bytes every time), idempotent (an up-to-date folder is left alone)
and atomic (built in a temporary folder, then renamed into place).
"""

import argparse
import hashlib
import os
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

DEMO_VERSION = 1
DEFAULT_OUT = Path('data/datasets/demo')
MARKER = '.demo-version'

COLOURS = {'red': (220, 40, 40), 'green': (40, 180, 70), 'blue': (40, 80, 220), 'yellow': (235, 200, 40),
           'white': (240, 240, 240), 'black': (20, 20, 20), 'purple': (140, 60, 170), 'orange': (240, 130, 30)}
# (width, height, fps, seconds, shape, shape colour, background, direction)
CLIPS = [
    (96, 64, 16, 2.0, 'circle', 'red', 'blue', 'left to right'),
    (64, 96, 24, 2.5, 'square', 'yellow', 'black', 'top to bottom'),
    (80, 80, 16, 3.0, 'circle', 'white', 'green', 'diagonally'),
    (96, 64, 24, 2.0, 'square', 'orange', 'purple', 'right to left'),
    (64, 96, 16, 2.5, 'circle', 'green', 'white', 'bottom to top'),
    (80, 80, 24, 3.0, 'square', 'blue', 'yellow', 'left to right'),
    (96, 64, 16, 3.0, 'square', 'black', 'orange', 'diagonally'),
    (80, 80, 24, 2.0, 'circle', 'purple', 'black', 'top to bottom'),
]
# (file name, width, height, shape, shape colour, background)
IMAGES = [
    ('still_00.png', 96, 64, 'circle', 'yellow', 'blue'),
    ('still_01.jpg', 64, 96, 'square', 'red', 'white'),
    ('still_02.png', 80, 80, 'square', 'green', 'black'),
    ('still_03.jpg', 128, 96, 'circle', 'orange', 'green'),
]
DATASET_TOML = """\
# The built-in demo dataset: tiny synthetic clips and images, small enough to train on a CPU.
# Made by tools/make_demo_dataset.py; see examples/dataset.toml for every key.

# Training area: 64*64 pixels, at the aspect-ratio bucket nearest to each file.
resolutions = [64]
enable_ar_bucket = true
min_ar = 0.5
max_ar = 2.0
num_ar_buckets = 3
# 1 = images; videos go to the longest bucket they fill at the model's frame rate.
frame_buckets = [1, 9, 17]

[[directory]]
# This folder (relative paths resolve against this file).
path = '.'
num_repeats = 1
"""


def _position(direction, t, w, h, r):
    """Centre of the shape at progress t in [0, 1]."""
    x = {'left to right': r + t * (w - 2 * r), 'right to left': w - r - t * (w - 2 * r)}.get(direction, w / 2)
    y = {'top to bottom': r + t * (h - 2 * r), 'bottom to top': h - r - t * (h - 2 * r)}.get(direction, h / 2)
    if direction == 'diagonally':
        x, y = r + t * (w - 2 * r), r + t * (h - 2 * r)
    return x, y


def _draw(w, h, shape, colour, background, centre, r):
    img = Image.new('RGB', (w, h), COLOURS[background])
    x, y = centre
    box = (round(x - r), round(y - r), round(x + r), round(y + r))
    draw = ImageDraw.Draw(img)
    (draw.ellipse if shape == 'circle' else draw.rectangle)(box, fill=COLOURS[colour])
    return img


def _clip_frames(w, h, fps, seconds, shape, colour, background, direction):
    n = int(round(fps * seconds))
    r = min(w, h) // 6
    return np.stack([np.asarray(_draw(w, h, shape, colour, background, _position(direction, i / (n - 1), w, h, r), r))
                     for i in range(n)])


def _fingerprint():
    return hashlib.sha256(repr((DEMO_VERSION, CLIPS, IMAGES, DATASET_TOML)).encode()).hexdigest()[:16]


def _write(folder: Path):
    from utils.media import write_video
    for k, (w, h, fps, seconds, shape, colour, background, direction) in enumerate(CLIPS):
        path = folder / f'clip_{k:02d}.mp4'
        write_video(path, _clip_frames(w, h, fps, seconds, shape, colour, background, direction), fps, crf=20)
        path.with_suffix('.txt').write_text(f'a {colour} {shape} moving {direction} on a {background} background\n',
                                            encoding='utf-8')
    for name, w, h, shape, colour, background in IMAGES:
        img = _draw(w, h, shape, colour, background, (w / 2, h / 2), min(w, h) // 4)
        path = folder / name
        img.save(path, **({'quality': 90} if path.suffix == '.jpg' else {'optimize': False}))
        path.with_suffix('.txt').write_text(f'a still {colour} {shape} on a {background} background\n', encoding='utf-8')
    (folder / 'dataset.toml').write_text(DATASET_TOML, encoding='utf-8')
    (folder / MARKER).write_text(_fingerprint() + '\n', encoding='utf-8')


def make_demo_dataset(out=DEFAULT_OUT, force=False) -> Path:
    """Write the demo dataset to `out` (unless it is already up to date); returns its dataset.toml."""
    out = Path(out)
    marker = out / MARKER
    if not force and marker.is_file() and marker.read_text(encoding='utf-8').strip() == _fingerprint():
        return out / 'dataset.toml'
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f'.{out.name}.tmp-{os.getpid()}'
    old = out.parent / f'.{out.name}.old-{os.getpid()}'
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        _write(tmp)
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return out / 'dataset.toml'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', default=str(DEFAULT_OUT), help='folder to write (default: %(default)s)')
    parser.add_argument('--force', action='store_true', help='rewrite even if the folder is up to date')
    args = parser.parse_args(argv)
    print(make_demo_dataset(args.out, args.force))


if __name__ == '__main__':
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run as a script: make `utils` importable
    main()
