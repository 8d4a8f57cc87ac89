"""Timings of the data path: probing, clip decoding (with and without a seek), image fitting, cache reads.

    python bench/bench_media.py            (from the repository root; writes into a temporary folder)

Not part of the test suite: numbers depend on the machine. Prints one line per measurement.
"""

import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run as a script: make `utils` importable

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from utils.cache import Cache  # noqa: E402
from utils.config import validate_dataset  # noqa: E402
from utils.dataset import MediaSpec, build_dataset  # noqa: E402
from utils.media import ffmpeg_exe, probe, probe_many, read_clip, read_image  # noqa: E402
from utils.train_data import Prefetcher  # noqa: E402


def timed(label, fn, repeat=3):
    best = float('inf')
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    print(f'{label:<60} {best * 1000:9.1f} ms')
    return out


def main():
    tmp = Path(tempfile.mkdtemp(prefix='odeo-bench-'))
    clip = tmp / 'clip.mp4'
    subprocess.run([ffmpeg_exe(), '-v', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=1280x720:rate=30', '-t', '10',
                    '-c:v', 'libx264', '-pix_fmt', 'yuv420p', '-g', '60', str(clip)], check=True)
    Image.effect_noise((3840, 2160), 64).convert('RGB').save(tmp / 'photo.jpg', quality=90)
    timed('probe 1280x720 30 fps 10 s H.264', lambda: probe(clip))
    timed('probe_many 20 copies (cold, 8 threads)', lambda: probe_many([clip] * 20))
    timed('read_clip 33 frames at 16 fps -> 832x480, start 0', lambda: read_clip(clip, 16, 0, 33, (832, 480)))
    timed('read_clip 33 frames at 16 fps -> 832x480, start 6 s (seek)', lambda: read_clip(clip, 16, 96, 33, (832, 480)))
    timed('read_clip 81 frames at 16 fps -> 832x480, start 0', lambda: read_clip(clip, 16, 0, 81, (832, 480)))
    timed('read_image 3840x2160 JPEG -> 512x512', lambda: read_image(tmp / 'photo.jpg', (512, 512)))

    data = tmp / 'data'
    data.mkdir()
    for i in range(16):
        Image.new('RGB', (832, 480), (i * 15, 100, 200)).save(data / f'{i}.png')
        (data / f'{i}.txt').write_text(f'caption {i}')
    cfg, _ = validate_dataset({'resolutions': [[832, 480]], 'directory': [{'path': str(data)}]}, str(tmp / 'd.toml'))
    ds = build_dataset(cfg, MediaSpec(16, 16))
    latent_shape = (16, 21, 60, 104)                       # an 81-frame 832x480 Wan2.1 latent: 4 MB in bfloat16

    def encode_media(pixels, masks):
        return {'latents': torch.randn(pixels.shape[0], *latent_shape).to(torch.bfloat16)}

    def encode_text(captions):
        return [{'text_embeddings': torch.randn(40, 4096, dtype=torch.bfloat16)} for _ in captions]

    cache = Cache(ds, 'bench', 'vae', 'te')
    timed('cache build 16 items (fake encoders, 4 MB latents)', lambda: cache.build(ds.items, encode_media, encode_text), 1)
    reader = cache.reader()
    ids = [it.id for it in ds.items]
    timed('CacheReader.get x16 (mmap)', lambda: [reader.get(i) for i in ids])
    timed('Prefetcher 16 micro-batches of 1', lambda: list(Prefetcher(reader, [[i] for i in ids])))


if __name__ == '__main__':
    main()
