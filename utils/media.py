"""Media probing and decoding: what a file is, and its pixels at the size and frame rate a model wants.

    info = probe('clip.mp4')                      # MediaInfo, or MediaError naming the file and the reason
    clip = read_clip('clip.mp4', fps=16, start=0, frames=33, size=(832, 480))   # uint8 [33, 480, 832, 3]
    img = read_image('photo.jpg', (512, 512))     # uint8 [1, 512, 512, 3]
    mask = read_mask('mask.png', (512, 512))      # float32 [512, 512], 1 = train, 0 = ignore

Rules every reader follows:
- Geometry: scale so the target is covered (aspect kept), then crop the centre (`fit_geometry`).
  Videos honour their rotation (display matrix) and non-square pixels; images their EXIF orientation.
- Time: a video is resampled to the model frame rate by presentation timestamps. Output frame j shows
  whatever source frame is on screen at time (start + j) / fps, so variable frame rate works.
- Colour: RGB uint8. Alpha is composited on white, 16-bit is scaled to 8-bit, CMYK / palette /
  greyscale become RGB.
Decoding uses PyAV (FFmpeg) for video and Pillow for images; only the frames a clip needs are decoded
and a clip that starts late is reached by seeking to the keyframe before it.
"""

import json
import math
import os
import struct
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from utils.fsutil import atomic_write_json

IMAGE_EXTENSIONS = frozenset({'.png', '.jpg', '.jpeg', '.webp', '.bmp', '.tif', '.tiff', '.gif'})
VIDEO_EXTENSIONS = frozenset({'.mp4', '.mov', '.mkv', '.webm', '.avi', '.m4v', '.mpg', '.mpeg', '.ts', '.wmv', '.flv'})
SEEK_AFTER_S = 1.0        # a clip starting later than this is reached by a seek, not by decoding from 0
VFR_TOLERANCE = 0.1       # frame intervals differing from the median by more than this fraction (+1 tick) = VFR
TRUNCATION_SLACK = 0.9    # demuxed duration below this fraction of the header's duration = truncated


class MediaError(Exception):
    """A file that cannot be used, with a reason a person can act on."""

    def __init__(self, path, reason):
        self.path = str(path)
        self.reason = reason
        super().__init__(f'{self.path}: {reason}')


@dataclass
class MediaInfo:
    path: str
    kind: str                    # 'image' | 'video'
    width: int                   # as displayed (after rotation / EXIF orientation / pixel aspect)
    height: int
    frames: int                  # 1 for images
    fps: float | None            # average rate (frames / duration); None for images
    duration: float | None       # seconds; None for images
    vfr: bool = False            # frame intervals are not constant
    mode: str = ''               # Pillow mode ('RGB', 'CMYK', 'I;16', ...) or FFmpeg pixel format ('yuv420p')
    bit_depth: int = 8
    alpha: bool = False
    rotation: int = 0            # degrees counter-clockwise applied on decode (video)
    notes: list[str] = field(default_factory=list)   # conversions the readers apply, for the report

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        return cls(**d)


def media_kind(path):
    """'image' or 'video' by extension, or None for anything else (captions, metadata, stray files)."""
    ext = Path(path).suffix.lower()
    if ext in VIDEO_EXTENSIONS:
        return 'video'
    if ext in IMAGE_EXTENSIONS:
        return 'image'
    return None


def frames_at_fps(info: MediaInfo, fps: float) -> int:
    """Frames a video has once resampled to `fps` (1 for an image)."""
    if info.kind == 'image':
        return 1
    return int(math.floor(info.duration * fps + 1e-6))


def fit_geometry(src_w, src_h, w, h):
    """Aspect-preserving scale that covers (w, h), then a centre crop: (scaled_w, scaled_h, left, top)."""
    scale = max(w / src_w, h / src_h)
    sw = max(w, int(math.floor(src_w * scale + 0.5)))
    sh = max(h, int(math.floor(src_h * scale + 0.5)))
    return sw, sh, (sw - w) // 2, (sh - h) // 2


# --------------------------------------------------------------------------------------------
# Probing
# --------------------------------------------------------------------------------------------

def probe(path, max_pixels=None) -> MediaInfo:
    """Inspect a file by its content. Raises MediaError with a precise reason when it cannot be used;
    with `max_pixels`, a still whose header promises more pixels is refused before it is decoded."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise MediaError(path, 'file not found') from None
    except OSError as e:
        raise MediaError(path, f'cannot read: {e.strerror}') from None
    if size == 0:
        raise MediaError(path, 'empty file (0 bytes)')
    kind = media_kind(path)
    if kind is None:
        raise MediaError(path, f"not a media file (unknown extension '{path.suffix}')")
    return PROBERS[kind](path, size, max_pixels)


def _text_hint(path):
    """" (it is a text file starting '...')" when the file holds text, to explain why it is not media."""
    try:
        with open(path, 'rb') as f:
            head = f.read(256)
        text = head.decode('utf-8')
    except (OSError, UnicodeDecodeError):
        return ''
    if '\x00' in text or not text.strip():
        return ''
    return f' (it is a text file starting {text.strip()[:40]!r})'


def _probe_image(path, size, max_pixels=None):
    try:
        img = Image.open(path)
    except Exception as e:  # Pillow raises several types for unreadable data
        raise MediaError(path, f'not an image Pillow can read{_text_hint(path) or f" ({e})"}') from None
    with img:
        w, h = img.size
        if max_pixels and w * h > max_pixels:     # before getexif(), which decodes a whole PNG to find its EXIF
            raise MediaError(path, f'{w}x{h} = {w * h:,} pixels, more than the {max_pixels:,} allowed')
        notes = []
        mode = img.mode
        raw = img.tile[0].args if img.tile else None
        raw = raw[0] if isinstance(raw, tuple) else raw
        bit_depth = 16 if mode.startswith('I;16') or mode == 'I' or (isinstance(raw, str) and ';16' in raw) else 8
        alpha = mode in ('RGBA', 'LA', 'PA', 'RGBa', 'La') or 'transparency' in img.info
        if getattr(img, 'n_frames', 1) > 1:
            notes.append(f'animated image ({img.n_frames} frames): first frame used')
        orientation = img.getexif().get(0x0112, 1)
        w, h = img.size
        if orientation in (5, 6, 7, 8):
            w, h = h, w
        if orientation not in (1, None):
            notes.append(f'EXIF orientation {orientation} applied')
        notes += _colour_notes(mode, alpha, bit_depth)
        try:
            img.load()
        except Exception as e:
            raise MediaError(path, f'truncated or corrupt image ({e})') from None
    return MediaInfo(str(path), 'image', w, h, 1, None, None, False, mode, bit_depth, alpha, 0, notes)


def _colour_notes(mode, alpha, bit_depth):
    notes = []
    if mode == 'CMYK':
        notes.append('CMYK converted to RGB')
    if alpha:
        notes.append(f'{mode} with alpha: composited on white')
    if bit_depth > 8:
        notes.append(f'{bit_depth}-bit scaled to 8-bit')
    if mode in ('P', 'PA'):
        notes.append('palette converted to RGB')
    if mode in ('1', 'L', 'LA', 'I', 'I;16', 'I;16B', 'I;16L', 'I;16N', 'F'):
        notes.append('greyscale converted to RGB')
    return notes


def _open_video(path):
    import av
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as e:
        reason = _mp4_box_problem(path) or 'not a video FFmpeg can read' + (_text_hint(path) or f' ({_ff_reason(e)})')
        raise MediaError(path, reason) from None
    if not container.streams.video:
        container.close()
        raise MediaError(path, _mp4_box_problem(path) or 'no video stream in the file')
    return container, container.streams.video[0]


def _mp4_box_problem(path):
    """For an MP4/MOV that FFmpeg refuses: a precise reason from its top-level box layout, or None."""
    size = os.path.getsize(path)
    with open(path, 'rb') as f:
        if f.read(8)[4:8] != b'ftyp':
            return None
        offset, boxes = 0, []
        while offset < size:
            f.seek(offset)
            header = f.read(16)
            if len(header) < 8:
                return f'truncated: {size - offset} stray bytes after the last complete box'
            box_size, box = struct.unpack('>I4s', header[:8])
            if box_size == 1 and len(header) == 16:
                box_size = struct.unpack('>Q', header[8:16])[0]
            elif box_size == 0:
                box_size = size - offset
            if box_size < 8:
                return f'corrupt: a box at byte {offset} claims {box_size} bytes'
            name = box.decode('latin-1')
            if offset + box_size > size:
                return f"truncated: the '{name}' box needs {offset + box_size} bytes but the file has {size}"
            boxes.append(name)
            offset += box_size
    if 'moov' not in boxes:
        return "incomplete: no 'moov' index box (the recording or export did not finish)"
    return None


def _ff_reason(e):
    return getattr(e, 'strerror', None) or str(e)


def _probe_video(path, size, max_pixels=None):
    import av
    container, stream = _open_video(path)
    try:
        n, duration, vfr = _frame_times(container, stream, path, size)
        try:
            first = next(container.decode(stream))
        except (StopIteration, av.error.FFmpegError) as e:
            reason = _ff_reason(e) if isinstance(e, av.error.FFmpegError) else 'no frame decodes'
            raise MediaError(path, f'cannot decode the first frame ({reason})') from None
        rotation = int(getattr(first, 'rotation', 0) or 0) % 360
        pix_fmt = stream.codec_context.pix_fmt or first.format.name
        w, h = stream.codec_context.width or first.width, stream.codec_context.height or first.height
        sar = stream.sample_aspect_ratio
        notes = []
        if sar and float(sar) not in (0.0, 1.0):
            w = int(round(w * float(sar)))
            notes.append(f'non-square pixels ({sar}): shown at {w}x{h}')
        if rotation in (90, 270):
            w, h = h, w
        if rotation:
            notes.append(f'rotated {rotation} degrees on decode')
        if vfr:
            notes.append(f'variable frame rate ({n} frames over {duration:.2f} s): resampled by timestamps')
        components = av.VideoFormat(pix_fmt).components
        depth = max(c.bits for c in components)
        alpha = any(c.is_alpha for c in components)
        if depth > 8:
            notes.append(f'{depth}-bit video ({pix_fmt}) converted to 8-bit RGB')
        if alpha:
            notes.append(f'alpha channel of {pix_fmt} ignored')
        return MediaInfo(str(path), 'video', w, h, n, n / duration, duration, vfr, pix_fmt, depth, alpha, rotation, notes)
    finally:
        container.close()


def _frame_times(container, stream, path, size):
    """(frame count, duration in seconds, variable frame rate?) from timestamps.

    Constant-rate MP4/MOV: read from the container's index without touching frame data. Otherwise
    (variable rate, or a container with no complete index) every packet is demuxed (no decoding)."""
    tb = float(stream.time_base)
    stamps = _index_timestamps(path, size, stream)
    if stamps is not None and len(stamps) > 1:
        deltas = np.diff(np.asarray(stamps, dtype=np.int64))
        if not _irregular(deltas):
            return len(stamps), float(len(stamps) * np.median(deltas) * tb), False
    pts = sorted(p.pts if p.pts is not None else p.dts for p in container.demux(stream)
                 if p.size and not p.is_discard and (p.pts is not None or p.dts is not None))
    container.seek(0)
    if not pts:
        raise MediaError(path, 'the video stream has no frames')
    n = len(pts)
    if n == 1:
        rate = float(stream.average_rate or stream.guessed_rate or 1)
        return 1, 1.0 / rate, False
    deltas = np.diff(np.asarray(pts, dtype=np.int64))
    duration = float((pts[-1] - pts[0] + deltas[-1]) * tb)
    header = container.duration / 1e6 if container.duration else None
    if stamps is None and header and duration < TRUNCATION_SLACK * header:
        raise MediaError(path, f'truncated: the header says {header:.2f} s but only {duration:.2f} s of frames are in the file')
    return n, duration, _irregular(deltas)


def _irregular(deltas):
    """True when frame intervals differ from their median by more than VFR_TOLERANCE (plus one tick)."""
    step = float(np.median(deltas))
    return bool(len(deltas) > 1 and np.any(np.abs(deltas - step) > VFR_TOLERANCE * step + 1))


def _index_timestamps(path, size, stream):
    """Frame timestamps from the container's index (MP4/MOV sample table) without reading frame data.
    None when the index is not complete (Matroska, AVI...) or an edit list hides frames: the caller
    demuxes instead."""
    try:
        entries = list(stream.index_entries)
    except Exception:
        return None
    if not entries or stream.frames <= 0 or len(entries) != stream.frames:
        return None
    end = max(e.pos + e.size for e in entries)
    if end > size:
        present = sum(1 for e in entries if e.pos + e.size <= size)
        raise MediaError(path, f'truncated: the file is {size} bytes but its frame index needs {end} '
                               f'({present} of {len(entries)} frames present)')
    if any(e.is_discard for e in entries):
        return None
    return sorted(e.timestamp for e in entries)


PROBERS = {'image': _probe_image, 'video': _probe_video}


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------

def _to_rgb(img: Image.Image, composite=True) -> Image.Image:
    """Any Pillow image -> 8-bit RGB (alpha on white when `composite`, 16-bit scaled down)."""
    if img.mode in ('I', 'F') or img.mode.startswith('I;16'):
        a = np.asarray(img).astype(np.float64)
        a = a / 257.0 if img.mode != 'F' else a * 255.0 if a.max() <= 1.0 else a
        img = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), 'L')
    if img.mode == 'CMYK':
        return img.convert('RGB')
    has_alpha = img.mode in ('RGBA', 'LA', 'PA', 'RGBa', 'La') or 'transparency' in img.info
    if has_alpha and composite:
        rgba = img.convert('RGBA')
        white = Image.new('RGBA', rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert('RGB')
    return img.convert('RGB') if img.mode != 'RGB' else img


def _open_image(path):
    try:
        img = Image.open(path)
        img.seek(0)
        img = ImageOps.exif_transpose(img)
        img.load()
        return img
    except FileNotFoundError:
        raise MediaError(path, 'file not found') from None
    except Exception as e:
        raise MediaError(path, f'cannot decode image ({e})') from None


def _fit_pil(img: Image.Image, size):
    w, h = size
    sw, sh, left, top = fit_geometry(img.width, img.height, w, h)
    if (sw, sh) != img.size:
        img = img.resize((sw, sh), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return img.crop((left, top, left + w, top + h))


def read_image(path, size):
    """uint8 tensor [1, h, w, 3] of an image fitted to size = (w, h)."""
    import torch
    img = _to_rgb(_open_image(path))
    arr = np.asarray(_fit_pil(img, size), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).unsqueeze(0)


def read_mask(path, size):
    """float32 tensor [h, w] in [0, 1] from the mask's R channel (white = train), fitted like the media."""
    import torch
    img = _to_rgb(_open_image(path), composite=False)
    arr = np.asarray(_fit_pil(img, size), dtype=np.float32)[..., 0] / 255.0
    return torch.from_numpy(arr.copy())


class _FrameFitter:
    """Converts decoded frames to RGB at the target size: one swscale resize, rotation, centre crop."""

    def __init__(self, stream, first, size):
        self.w, self.h = size
        cw, ch = first.width, first.height
        sar = stream.sample_aspect_ratio
        dw = cw * float(sar) if sar and float(sar) not in (0.0, 1.0) else cw
        self.rotation = int(getattr(first, 'rotation', 0) or 0) % 360
        disp_w, disp_h = (ch, dw) if self.rotation in (90, 270) else (dw, ch)
        self.sw, self.sh, self.left, self.top = fit_geometry(disp_w, disp_h, self.w, self.h)
        # swscale works before rotation: swap the target sides back for 90/270 degrees
        self.rw, self.rh = (self.sh, self.sw) if self.rotation in (90, 270) else (self.sw, self.sh)
        self.interp = 'AREA' if self.rw < cw else 'BICUBIC'

    def __call__(self, frame):
        arr = frame.reformat(width=self.rw, height=self.rh, format='rgb24', interpolation=self.interp).to_ndarray()
        if self.rotation:
            arr = np.rot90(arr, k=self.rotation // 90)
        return arr[self.top:self.top + self.h, self.left:self.left + self.w]


def read_clip(path, fps: float, start: int, frames: int, size):
    """uint8 tensor [frames, h, w, 3]: frames start .. start+frames-1 of the video resampled to `fps`.

    Output frame j is the source frame on screen at time (start + j) / fps after the first frame."""
    import av
    import torch
    container, stream = _open_video(path)
    try:
        stream.thread_type = 'AUTO'
        tb = float(stream.time_base)
        targets = [(start + j) / fps for j in range(frames)]
        t0 = float(stream.start_time) * tb if stream.start_time is not None else None
        if t0 is not None and targets[0] > SEEK_AFTER_S:
            container.seek(int((t0 + targets[0]) / tb), stream=stream, backward=True, any_frame=False)
        out = [None] * frames
        j = 0
        held = None            # (frame, converted array or None, time) on screen before the current one
        fitter = None
        step = 1.0 / fps
        eps = 1e-4

        def emit(entry):
            if entry[1] is None:
                entry[1] = fitter(entry[0])
            return entry[1]

        try:
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                if fitter is None:
                    fitter = _FrameFitter(stream, frame, size)
                if t0 is None:
                    t0 = frame.pts * tb
                t = frame.pts * tb - t0
                if held is not None:
                    step = max(t - held[2], 1e-6)
                while j < frames and targets[j] < t - eps:
                    out[j] = emit(held if held is not None else [frame, None, t])
                    j += 1
                if j >= frames:
                    break
                held = [frame, None, t]
        except av.error.FFmpegError as e:
            raise MediaError(path, f'decoding failed at frame {start + j} of the clip ({_ff_reason(e)})') from None
        if j < frames:
            if held is None:
                raise MediaError(path, 'no frames could be decoded')
            if targets[-1] > held[2] + 1.5 * step + eps:
                raise MediaError(path, f'video ends early: frames stop at {held[2]:.2f} s but the clip needs '
                                       f'frames up to {targets[-1]:.2f} s')
            while j < frames:
                out[j] = emit(held)
                j += 1
    finally:
        container.close()
    return torch.from_numpy(np.ascontiguousarray(np.stack(out)))


def read_media(path, kind, fps, start, frames, size):
    """One entry point for the cache: a clip of a video, or an image as a one-frame clip."""
    return READERS[kind](path, fps, start, frames, size)


READERS = {
    'video': read_clip,
    'image': lambda path, fps, start, frames, size: read_image(path, size),
}


def file_signature(path):
    """(size, mtime_ns) of a file: what decides whether anything derived from it is still valid."""
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def ffmpeg_exe():
    import imageio_ffmpeg
    return imageio_ffmpeg.get_ffmpeg_exe()


def write_video(path, frames, fps, crf=18, video_filter=None, extra_args=()):
    """Encode uint8 RGB frames [F, H, W, 3] (numpy or torch) to an H.264 MP4 with the FFmpeg binary.

    Bit-exact and single-threaded, so the same frames give the same bytes; written to a temporary
    name and renamed into place. `video_filter` is an FFmpeg -vf chain (e.g. a setpts expression)."""
    import subprocess
    import tempfile
    frames = np.ascontiguousarray(np.asarray(frames, dtype=np.uint8))
    n, h, w, _ = frames.shape
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.stem}.', suffix=path.suffix, dir=path.parent)
    os.close(fd)
    cmd = [ffmpeg_exe(), '-v', 'error', '-y', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', f'{w}x{h}',
           '-framerate', str(fps), '-i', '-']
    if video_filter:
        cmd += ['-vf', video_filter, '-fps_mode', 'vfr']
    cmd += ['-c:v', 'libx264', '-preset', 'medium', '-crf', str(crf), '-pix_fmt', 'yuv420p', '-threads', '1',
            '-x264-params', 'threads=1', '-fflags', '+bitexact', '-flags:v', '+bitexact', '-map_metadata', '-1',
            '-movflags', '+faststart', *extra_args, tmp]
    try:
        proc = subprocess.run(cmd, input=frames.tobytes(), capture_output=True)
        if proc.returncode != 0:
            raise RuntimeError(f'ffmpeg failed writing {path}: {proc.stderr.decode(errors="replace").strip()}')
        with open(tmp, 'rb+') as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


PROBE_CACHE_VERSION = 1         # bump when probe() changes what it reports: cached results are then ignored


def probe_many(paths, workers=None, cache_file=None, max_pixels=None):
    """{path: MediaInfo or MediaError} for many files, probed in parallel threads.

    With `cache_file` (a JSON file), results are remembered by (path, size, mtime_ns): an unchanged
    file is not opened again. The cache is a convenience: a folder we cannot write is fine."""
    cached = {}
    if cache_file and os.path.isfile(cache_file):
        try:
            data = json.loads(Path(cache_file).read_text(encoding='utf-8'))
            if data.get('version') == PROBE_CACHE_VERSION:
                cached = data.get('files', {})
        except (OSError, ValueError):
            cached = {}
    results, fresh, todo = {}, {}, []
    for p in paths:
        try:
            sig = list(file_signature(p))
        except OSError:
            results[p] = MediaError(p, 'file not found')
            continue
        hit = cached.get(str(p))
        if hit and hit['sig'] == sig:
            results[p] = MediaInfo.from_dict(hit['info']) if hit.get('info') else MediaError(p, hit['error'])
            fresh[str(p)] = hit
        else:
            todo.append((p, sig))

    def one(job):
        p, sig = job
        try:
            return p, sig, probe(p, max_pixels)
        except MediaError as e:
            return p, sig, e

    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
        for p, sig, res in pool.map(one, todo):
            results[p] = res
            entry = {'sig': sig}
            entry.update({'info': res.to_dict()} if isinstance(res, MediaInfo) else {'error': res.reason})
            fresh[str(p)] = entry
    if cache_file and todo:
        try:
            atomic_write_json(cache_file, {'version': PROBE_CACHE_VERSION, 'files': fresh}, durable=False)
        except OSError:
            pass
    return results
