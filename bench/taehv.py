"""Decode time of one Wan2.1 latent: TAEHV (published taew2_1 size) vs the full Wan2.1 VAE (diffusers
AutoencoderKLWan at its default, i.e. Wan2.1, config), both with random weights, side by side in one run.

    python bench/taehv.py                                  # 480x832, 81 frames (21 latents), CPU
    python bench/taehv.py --frames 9 --threads 2           # fewer frames: the full VAE is slow on a CPU
    python bench/taehv.py --device cuda --dtype bfloat16   # on a GPU
    python bench/taehv.py --preview --repeats 5            # live preview latency per denoising step

Prints the median of --repeats timed decodes (after --warmup untimed ones) per decoder and the ratio.
--preview times what a render pays per step for its live preview instead (models/taehv/preview.py): the
step's latents shrunk to a --preview_side preview, decoded by TAEHV (published taew2_1 size) and encoded as
an animated WebP, split into decode and encode.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models.taehv.model import PRESETS, TAEHV  # noqa: E402
from models.taehv.preview import LivePreview, webp  # noqa: E402


def timed(fn, device, repeats, warmup):
    def sync():
        if device.type == 'cuda':
            torch.cuda.synchronize()
    for _ in range(warmup):                # allocations, kernel selection
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--height', type=int, default=480)
    p.add_argument('--width', type=int, default=832)
    p.add_argument('--frames', type=int, default=81, help='video frames, 4n+1 (81 = 21 latent frames)')
    p.add_argument('--device', default='cpu')
    p.add_argument('--dtype', default='float32', choices=('float32', 'bfloat16', 'float16'))
    p.add_argument('--repeats', type=int, default=1, help='timed decodes per decoder (the median is printed)')
    p.add_argument('--warmup', type=int, default=1, help='untimed decodes first (0 on a CPU saves the time)')
    p.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    p.add_argument('--skip_vae', action='store_true', help='time TAEHV only')
    p.add_argument('--preview', action='store_true', help='per-step live preview latency (decode + WebP) instead')
    p.add_argument('--preview_side', type=int, default=256, help='longest side of the preview, pixels')
    args = p.parse_args(argv)
    if (args.frames - 1) % 4:
        p.error('--frames must be 4n+1')
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    latent = torch.randn(1, 16, (args.frames - 1) // 4 + 1, args.height // 8, args.width // 8, device=device, dtype=dtype)
    print(f'latent {tuple(latent.shape)} -> video {args.frames}x{args.height}x{args.width}, {device}, {args.dtype}, '
          f'{torch.get_num_threads()} CPU threads')
    if args.preview:
        return preview_latency(latent, device, dtype, args)
    results = {}
    with torch.no_grad():
        taehv = TAEHV(PRESETS['taew2_1']).to(device, dtype).eval()
        results['TAEHV (taew2_1)'] = timed(lambda: taehv.decode(latent), device, args.repeats, args.warmup)
        print(f'TAEHV (taew2_1)      {results["TAEHV (taew2_1)"]:12.1f} ms', flush=True)
        taehv = None                        # free it before the VAE is built
        if not args.skip_vae:
            from diffusers import AutoencoderKLWan
            vae = AutoencoderKLWan().to(device, dtype).eval()     # defaults = the Wan2.1 VAE (base_dim 96, z_dim 16)
            results['Wan2.1 VAE'] = timed(lambda: vae.decode(latent).sample, device, args.repeats, args.warmup)
            print(f'Wan2.1 VAE           {results["Wan2.1 VAE"]:12.1f} ms', flush=True)
            print(f'ratio (VAE / TAEHV)  {results["Wan2.1 VAE"] / results["TAEHV (taew2_1)"]:12.1f} x')
    return 0


def preview_latency(latent, device, dtype, args):
    live = LivePreview(TAEHV(PRESETS['taew2_1']), max_side=args.preview_side, device=device, dtype=dtype)
    frames = live.frames(latent)
    print(f'preview {frames.shape[0]}x{frames.shape[1]}x{frames.shape[2]} (longest side {args.preview_side})')
    ms_decode = timed(lambda: live.frames(latent), device, args.repeats, args.warmup)   # ends on the CPU
    ms_encode = timed(lambda: webp(frames, 16), torch.device('cpu'), args.repeats, args.warmup)
    ms_total = timed(lambda: live.render(latent, 16), device, args.repeats, args.warmup)
    print(f'decode (TAEHV)       {ms_decode:12.1f} ms')
    print(f'encode (WebP)        {ms_encode:12.1f} ms')
    print(f'preview per step     {ms_total:12.1f} ms  (decode + encode, median of {args.repeats})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
