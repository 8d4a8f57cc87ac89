"""Bucket maths: which (width, height, frames) a file trains at, and where its clips start.

Aspect-ratio mode (without size_buckets):
- aspect ratios (width / height) are `num_ar_buckets` values log-spaced from `min_ar` to `max_ar`
  (np.geomspace), or the explicit `ar_buckets`, or just 1.0 when `enable_ar_bucket = false`; each is
  rounded to 3 decimals and duplicates merged;
- a file goes to the aspect ratio nearest to its own in log space (ties: the narrower one);
- each entry of `resolutions` is an area: 512 means 512*512, [1280, 720] means 1280*720. At aspect
  ratio a, the bucket is w = sqrt(area * a), h = sqrt(area / a), each rounded to the nearest multiple
  of the model's size step (16, or 32 for Wan2.2 ti2v-5B; halves round up), at least one step;
  a file lands in one bucket per resolution (identical sizes merged);
- frames: images go to 1; a video to the largest frame bucket (> 1) not longer than its frame count
  at the model frame rate; a video shorter than every video frame bucket is dropped.
Size-bucket mode (`size_buckets = [[w, h, frames], ...]`): among the buckets a file fits (images:
frames 1; videos: 1 < frames <= its length) the nearest aspect ratio wins, then the most frames.
"""

import math
from dataclasses import dataclass

import numpy as np

AR_DECIMALS = 3


class Drop(Exception):
    """Raised by assignment: the file gets no bucket, for the reason given."""


def round_to_multiple(x, multiple):
    """Nearest multiple of `multiple` (halves up), never below `multiple`."""
    return max(multiple, int(math.floor(x / multiple + 0.5)) * multiple)


def resolution_area(resolution):
    """512 -> 512*512; [1280, 720] -> 1280*720."""
    if isinstance(resolution, (list, tuple)):
        return resolution[0] * resolution[1]
    return resolution * resolution


def resolution_label(resolution):
    return f'{resolution[0]}x{resolution[1]}' if isinstance(resolution, (list, tuple)) else str(resolution)


def aspect_ratios(cfg):
    """Sorted, de-duplicated aspect ratios for a directory config (see module doc)."""
    if not cfg.get('enable_ar_bucket', False):
        ars = [1.0]
    elif cfg.get('ar_buckets'):
        ars = [a[0] / a[1] if isinstance(a, (list, tuple)) else float(a) for a in cfg['ar_buckets']]
    else:
        ars = np.geomspace(cfg['min_ar'], cfg['max_ar'], num=cfg['num_ar_buckets']).tolist()
    return sorted({round(a, AR_DECIMALS) for a in ars})


def nearest_index(ar, candidates):
    """Index of the candidate aspect ratio nearest to `ar` in log space (first on ties)."""
    dist = [abs(math.log(ar) - math.log(c)) for c in candidates]
    best = min(dist)
    return next(i for i, d in enumerate(dist) if d <= best + 1e-12)


def bucket_size(area, ar, multiple):
    """(w, h) keeping `area` at aspect ratio `ar`, sides rounded to `multiple`."""
    w = math.sqrt(area * ar)
    h = math.sqrt(area / ar)
    return round_to_multiple(w, multiple), round_to_multiple(h, multiple)


def video_frame_bucket(n_frames, frame_buckets):
    """Largest frame bucket > 1 that is <= n_frames, or None."""
    fits = [f for f in frame_buckets if 1 < f <= n_frames]
    return max(fits) if fits else None


def clip_starts(n_frames, bucket_frames, mode):
    """Start frames (at the model frame rate) of the clips taken from a video of n_frames."""
    return CLIP_MODES[mode](n_frames, bucket_frames)


def _single_beginning(n, f):
    return [0]


def _single_middle(n, f):
    return [(n - f) // 2]


def _multiple_overlapping(n, f):
    """The fewest clips of length f covering all n frames, evenly spaced (they may overlap)."""
    k = math.ceil(n / f)
    if k == 1:
        return [0]
    span = n - f
    return [int(math.floor(i * span / (k - 1) + 0.5)) for i in range(k)]


CLIP_MODES = {
    'single_beginning': _single_beginning,
    'single_middle': _single_middle,
    'multiple_overlapping': _multiple_overlapping,
}


@dataclass(frozen=True)
class Assignment:
    bucket: tuple          # (w, h, frames)
    resolution: str        # the `resolutions` entry it came from ('512', '1280x720'), or 'size_bucket'


class BucketPlan:
    """The buckets of one [[directory]]: built once from its config, then asked per file."""

    def __init__(self, cfg, size_multiple, framerate):
        self.multiple = size_multiple
        self.framerate = framerate
        self.size_buckets = [tuple(b) for b in cfg.get('size_buckets') or []]
        if self.size_buckets:
            self.ars = sorted({round(w / h, AR_DECIMALS) for w, h, _ in self.size_buckets})
            self.frame_buckets = sorted({b[2] for b in self.size_buckets})
            self.resolutions = []
        else:
            self.ars = aspect_ratios(cfg)
            self.frame_buckets = sorted(set(cfg.get('frame_buckets') or [1]) | {1})
            self.resolutions = list(cfg['resolutions'])

    def assign(self, width, height, kind, n_frames):
        """Buckets for a file of this display size, kind and length (frames at the model rate). Raises Drop."""
        if self.size_buckets:
            return [self._assign_size_bucket(width / height, kind, n_frames)]
        if kind == 'image':
            frames = 1
        else:
            frames = video_frame_bucket(n_frames, self.frame_buckets)
            if frames is None:
                raise Drop(self._too_short(n_frames))
        ar = self.ars[nearest_index(width / height, self.ars)]
        out, seen = [], set()
        for res in self.resolutions:
            w, h = bucket_size(resolution_area(res), ar, self.multiple)
            if (w, h) not in seen:
                seen.add((w, h))
                out.append(Assignment((w, h, frames), resolution_label(res)))
        return out

    def _assign_size_bucket(self, ar, kind, n_frames):
        if kind == 'image':
            fits = [b for b in self.size_buckets if b[2] == 1]
            if not fits:
                raise Drop('no image bucket: size_buckets has no [width, height, 1] entry')
        else:
            fits = [b for b in self.size_buckets if 1 < b[2] <= n_frames]
            if not fits:
                raise Drop(self._too_short(n_frames))
        log_ar = math.log(ar)
        best = min(fits, key=lambda b: (round(abs(log_ar - math.log(b[0] / b[1])), 9), -b[2]))
        return Assignment(best, 'size_bucket')

    def _too_short(self, n_frames):
        video = [f for f in self.frame_buckets if f > 1]
        if not video:
            return f'no video frame bucket: frame_buckets = {self.frame_buckets} has only the image bucket'
        return f'too short: {n_frames} frames at {self.framerate:g} fps, smallest frame bucket is {min(video)}'
