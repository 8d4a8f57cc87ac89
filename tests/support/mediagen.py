"""Tiny real test media: H.264 videos through the FFmpeg binary, images through Pillow.

Frames carry their own index (the grey level is 8 * index), so a test can read back which source
frame a decoder picked."""

import numpy as np
from PIL import Image

from utils.media import write_video


def indexed_frames(n, width, height):
    """uint8 [n, height, width, 3]; frame i is grey level 8*i (mod 256) with a white square moving right."""
    frames = np.zeros((n, height, width, 3), np.uint8)
    for i in range(n):
        frames[i] = (8 * i) % 256
        x = (i * 2) % max(1, width - 8)
        frames[i, 2:8, x:x + 6] = 255
    return frames


def video(path, width=48, height=32, fps=16, frames=20, vfr_expr=None, gop=None):
    """An MP4 of `frames` indexed frames at `fps`; vfr_expr is an FFmpeg setpts expression (in seconds
    of frame N), gop the keyframe interval."""
    vf = f"setpts='({vfr_expr})/TB'" if vfr_expr else None
    extra = ('-g', str(gop)) if gop else ()
    return write_video(path, indexed_frames(frames, width, height), fps, crf=0, video_filter=vf, extra_args=extra)


def frame_index(clip):
    """Source frame index of every frame of a decoded uint8 clip [F, H, W, 3] (from its grey level)."""
    return [int(round(float(f[-4:, :4, 0].float().mean()) / 8)) for f in clip]


def image(path, width=48, height=32, mode='RGB', color=(200, 40, 40), **save):
    img = Image.new('RGB', (width, height), color)
    img = img if mode == 'RGB' else img.convert(mode)
    img.save(path, **save)
    return path


def caption(path, text):
    path.with_suffix('.txt').write_text(text, encoding='utf-8')
