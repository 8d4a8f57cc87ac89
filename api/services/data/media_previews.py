"""What the browser shows of a clip: a thumbnail, a strip of frames, and a copy it can play.

    previews = Previews(max_pixels=40_000_000, gate=MediaGate(2, wait_s=5))
    previews.thumbnail(path)           # JPEG (at most THUMB_SIZE), cached
    previews.strip(path, n=8)          # JPEG of n frames side by side; frame k at (k + 0.5) * duration / n
    previews.playable(path)            # the file itself when a browser plays it, else a cached H.264 copy

Frames come from the FFmpeg binary (imageio_ffmpeg), images through Pillow (EXIF orientation, alpha on
white). Everything is cached in the dataset's .studio/previews/ under a key of the file's relative path,
size and mtime, so a changed file gets fresh previews and the old ones are removed.

Decoding is bounded: a still whose header says it has more than `max_pixels` pixels is refused before
any decoding (probe(max_pixels); 422 naming the file and its pixel count), thumbnails decode at reduced size (JPEG draft,
Pillow's reduce), and at most `gate.slots` media operations run at once (a request that finds none free
within `gate.wait_s` gets 503 with Retry-After).
"""

import hashlib
import os
import subprocess
import threading
from pathlib import Path

from PIL import Image, ImageOps

from utils.fsutil import atomic_save
from utils.media import MediaError, ffmpeg_exe, file_signature, probe

from ..errors import Busy, Invalid
from .datasets import STUDIO_DIR

THUMB_SIZE = 320                    # longest side of a thumbnail, pixels
STRIP_HEIGHT = 90                   # height of each frame in a strip, pixels
STRIP_MAX = 24                      # most frames a strip may hold
PREVIEW_MAX_SIDE = 1280             # preview copies are scaled down to at most this width
BROWSER_CONTAINERS = {'.mp4', '.m4v', '.mov', '.webm'}
BROWSER_CODECS = {'h264', 'vp8', 'vp9', 'av1'}
BROWSER_PIX_FMTS = {'yuv420p', 'yuvj420p'}
BROWSER_IMAGES = {'.png', '.jpg', '.jpeg', '.webp', '.gif', '.bmp'}
FFMPEG_TIMEOUT_S = 600


class ToolError(Invalid):
    """FFmpeg could not make what was asked; the message names the file and FFmpeg's last words."""


class MediaGate:
    """At most `slots` media operations (probes, thumbnails, strips, preview copies, TAEHV decodes of cached
    clips) at once, shared by every request; one that finds no slot free within `wait_s` seconds is answered
    Busy (503, Retry-After)."""

    def __init__(self, slots=2, wait_s=5.0):
        self.slots, self.wait_s = max(1, int(slots)), wait_s
        self._sem = threading.BoundedSemaphore(self.slots)

    def run(self, what, fn, *args):
        if not self._sem.acquire(timeout=self.wait_s):
            raise Busy(f'{what}: the studio is busy with {self.slots} other media operations; try again shortly',
                       retry_after=max(1, round(self.wait_s)))
        try:
            return fn(*args)
        finally:
            self._sem.release()


def run_ffmpeg(args, what, timeout=FFMPEG_TIMEOUT_S):
    """Run the FFmpeg binary; stderr is returned (scene detection reads it)."""
    cmd = [ffmpeg_exe(), '-hide_banner', '-nostdin', '-y', *[str(a) for a in args]]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ToolError(f'{what}: FFmpeg took longer than {timeout} s') from None
    err = proc.stderr.decode('utf-8', errors='replace')
    if proc.returncode != 0:
        last = [line for line in err.strip().splitlines() if line.strip()][-3:]
        raise ToolError(f'{what}: FFmpeg failed ({" / ".join(last) or f"exit code {proc.returncode}"})')
    return err


def stream_info(path):
    """(codec name, pixel format) of a video's first video stream, read by PyAV."""
    import av
    try:
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            return s.codec_context.name, s.codec_context.pix_fmt
    except (av.error.FFmpegError, IndexError) as e:
        raise MediaError(path, f'cannot read the video stream ({e})') from None


def browser_plays(path, info):
    """True when a browser's <video>/<img> shows the file as it is."""
    suffix = Path(path).suffix.lower()
    if info.kind == 'image':
        return suffix in BROWSER_IMAGES
    if suffix not in BROWSER_CONTAINERS:
        return False
    codec, pix_fmt = stream_info(path)
    return codec in BROWSER_CODECS and pix_fmt in BROWSER_PIX_FMTS


def display_filter():
    """Square pixels (non-square ones stretched), for anything shown to a person."""
    return "scale='trunc(iw*max(1,sar)/2)*2':'trunc(ih*max(1,1/sar)/2)*2',setsar=1"


class Previews:
    def __init__(self, max_pixels=40_000_000, gate=None):
        self.max_pixels = max_pixels
        self.gate = gate or MediaGate()
        self._locks = {}
        self._guard = threading.Lock()

    def probe(self, path):
        """probe(path) within a media slot, stills over max_pixels refused (MediaError as from utils.media.probe)."""
        return self.gate.run(f'{Path(path).name}: probe', probe, path, self.max_pixels)

    def _checked(self, path):
        return probe_checked(path, max_pixels=self.max_pixels)

    def _lock(self, key):
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    @staticmethod
    def cache_path(path, kind, ext):
        """<dataset>/.studio/previews/<hash of name>.<size>-<mtime>.<kind>.<ext>"""
        path = Path(path)
        size, mtime = file_signature(path)
        name = hashlib.sha1(path.name.encode('utf-8')).hexdigest()[:16]
        return path.parent / STUDIO_DIR / 'previews' / f'{name}.{size}-{mtime}.{kind}.{ext}'

    def _cached(self, path, kind, ext, make):
        target = self.cache_path(path, kind, ext)
        if target.is_file():
            return target
        with self._lock(str(target)):
            if not target.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                atomic_save(target, make, durable=False)
                prefix = target.name.split('.')[0]
                for old in target.parent.glob(f'{prefix}.*.{kind}.{ext}'):
                    if old != target:
                        old.unlink(missing_ok=True)
        return target

    # ---- thumbnails and strips ------------------------------------------------------------------
    def thumbnail(self, path):
        return self.gate.run(f'{Path(path).name}: thumbnail', self._thumbnail, path)

    def _thumbnail(self, path):
        info = self._checked(path)
        if info.kind == 'image':
            return self._cached(path, 'thumb', 'jpg', lambda tmp: _image_thumb(path, tmp))
        at = min(info.duration * 0.1, max(0.0, info.duration - 1.5 / info.fps))
        vf = f'{display_filter()},scale={THUMB_SIZE}:{THUMB_SIZE}:force_original_aspect_ratio=decrease'
        return self._cached(path, 'thumb', 'jpg', lambda tmp: run_ffmpeg(
            ['-v', 'error', '-ss', f'{at:.3f}', '-i', path, '-frames:v', '1', '-vf', vf, '-q:v', '4',
             '-f', 'mjpeg', tmp], f'{Path(path).name}: thumbnail'))

    def strip(self, path, n=8):
        """n frames side by side, frame k taken at (k + 0.5) * duration / n (an image: itself, once)."""
        info = self.gate.run(f'{Path(path).name}: probe', self._checked, path)
        if info.kind == 'image':
            return self.thumbnail(path)
        n = max(1, min(STRIP_MAX, int(n), info.frames))
        last = max(0.0, info.duration - 1.0 / info.fps)
        times = [min(last, (k + 0.5) * info.duration / n) for k in range(n)]
        args = ['-v', 'error']
        for t in times:
            args += ['-ss', f'{t:.3f}', '-i', path]
        scale = f'{display_filter()},scale=-2:{STRIP_HEIGHT}'
        chains = ';'.join(f'[{k}:v]trim=end_frame=1,{scale}[f{k}]' for k in range(n))
        joined = ''.join(f'[f{k}]' for k in range(n))
        graph = f'{chains};{joined}hstack=inputs={n}[out]' if n > 1 else f'{chains.replace("[f0]", "[out]")}'
        args += ['-filter_complex', graph, '-map', '[out]', '-frames:v', '1', '-q:v', '5', '-f', 'mjpeg']
        return self.gate.run(f'{Path(path).name}: frame strip', self._cached, path, f'strip{n}', 'jpg',
                             lambda tmp: run_ffmpeg(args + [tmp], f'{Path(path).name}: frame strip'))

    # ---- something the browser can play -----------------------------------------------------------
    def playable(self, path):
        """(path to serve, True when it is a preview copy rather than the file itself)."""
        return self.gate.run(f'{Path(path).name}: preview copy', self._playable, path)

    def _playable(self, path):
        info = self._checked(path)
        try:
            if browser_plays(path, info):
                return Path(path), False
        except MediaError as e:
            raise ToolError(e.reason) from None
        if info.kind == 'image':
            return self._cached(path, 'view', 'png', lambda tmp: _image_png(path, tmp)), True
        vf = f"{display_filter()},scale='2*trunc(min({PREVIEW_MAX_SIDE},iw)/2)':-2"
        return self._cached(path, 'preview', 'mp4', lambda tmp: run_ffmpeg(
            ['-v', 'error', '-i', path, '-map', '0:v:0', '-an', '-vf', vf, '-c:v', 'libx264', '-preset', 'veryfast',
             '-crf', '22', '-pix_fmt', 'yuv420p', '-movflags', '+faststart', '-f', 'mp4', tmp],
            f'{Path(path).name}: preview copy')), True


def probe_checked(path, error=ToolError, label=None, field=None, max_pixels=None):
    """probe(path); a file it cannot read raises `error` (a StudioError) naming the file, or `label`, and why."""
    try:
        return probe(path, max_pixels)
    except MediaError as e:
        raise error(f'{label or Path(path).name}: {e.reason}', field=field) from None


def _rgb(path, fit=None):
    """The image on white, as RGB; with `fit`, decoded at reduced size (JPEG draft, reduce) and scaled to fit."""
    img = Image.open(path)
    if fit:
        img.draft('RGB', (fit * 2, fit * 2))                     # JPEG: decode at 1/2 .. 1/8 scale
        img.thumbnail((fit, fit), reducing_gap=2.0)             # others: reduce() by an integer factor first
    img = ImageOps.exif_transpose(img)
    if img.mode in ('RGBA', 'LA', 'PA', 'P') or 'transparency' in img.info:
        rgba = img.convert('RGBA')
        white = Image.new('RGBA', rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert('RGB')
    return img.convert('RGB')


def _image_thumb(path, tmp):
    img = _rgb(path, fit=THUMB_SIZE)
    img.save(tmp, format='JPEG', quality=85)


def _image_png(path, tmp):
    _rgb(path).save(tmp, format='PNG')


def remove_previews(path):
    """Drop the cached previews of a file (it was deleted or replaced)."""
    path = Path(path)
    prefix = hashlib.sha1(path.name.encode('utf-8')).hexdigest()[:16]
    folder = path.parent / STUDIO_DIR / 'previews'
    for old in folder.glob(f'{prefix}.*') if folder.is_dir() else []:
        os.unlink(old)
