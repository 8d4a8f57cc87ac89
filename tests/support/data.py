"""Helpers for the Data area's tests: real media made with FFmpeg / Pillow, and small dataset folders."""

import hashlib
import subprocess
from pathlib import Path

from tests.support import mediagen
from utils.media import ffmpeg_exe

API = '/api/v1'


def ffmpeg(*args):
    subprocess.run([ffmpeg_exe(), '-v', 'error', '-y', *map(str, args)], check=True, capture_output=True)


def scene_video(path, scenes, fps=16, size='64x48'):
    """An H.264 MP4 of solid-colour scenes [(seconds, grey level 0-255), ...]: hard cuts between them."""
    inputs, labels = [], []
    for i, (seconds, grey) in enumerate(scenes):
        inputs += ['-f', 'lavfi', '-i', f'color=c=0x{grey:02x}{grey:02x}{grey:02x}:s={size}:r={fps}:d={seconds}']
        labels.append(f'[{i}:v]')
    graph = f'{"".join(labels)}concat=n={len(scenes)}:v=1:a=0[v]'
    ffmpeg(*inputs, '-filter_complex', graph, '-map', '[v]', '-c:v', 'libx264', '-pix_fmt', 'yuv420p', path)
    return Path(path)


def raw_avi(path, frames, size='320x240', fps=25):
    """Uncompressed video in AVI (big for its length, decodable, not playable in a browser)."""
    ffmpeg('-f', 'lavfi', '-i', f'testsrc=s={size}:r={fps}', '-frames:v', frames, '-c:v', 'rawvideo',
           '-pix_fmt', 'bgr24', path)
    return Path(path)


def mpeg4_avi(path, seconds=1, size='64x48', fps=16):
    """MPEG-4 Part 2 in AVI: real video a browser cannot play (the studio makes a preview copy)."""
    ffmpeg('-f', 'lavfi', '-i', f'testsrc=s={size}:r={fps}:d={seconds}', '-c:v', 'mpeg4', '-q:v', '3', path)
    return Path(path)


def sha256(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


def small_dataset(folder, captions=True):
    """clip.mp4 (40 indexed frames, 16 fps, 64x48), wide.mp4 (24 frames, 96x48), still.png (48x32);
    captions for the first two when `captions`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    mediagen.video(folder / 'clip.mp4', 64, 48, 16, 40)
    mediagen.video(folder / 'wide.mp4', 96, 48, 16, 24)
    mediagen.image(folder / 'still.png', 48, 32)
    if captions:
        mediagen.caption(folder / 'clip.mp4', 'a grey square slides right')
        mediagen.caption(folder / 'wide.mp4', 'a wide grey frame')
    return folder
