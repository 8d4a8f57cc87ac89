"""Live previews with a TAEHV: a few latent frames decoded at a reduced size and written as a small
looping animated WebP (every browser plays one in an <img>, no plugin; Pillow writes it in milliseconds).

    preview = LivePreview(load_taehv('taew2_1.pth'), max_side=256)
    frames = preview.frames(latents)              # [1, C, T, h, w] Wan latents -> uint8 [F, H', W', 3]
    data = webp(frames, fps=16)                   # bytes of an animated WebP

What to decode during sampling (`x0_of`): the denoiser's clean-video estimate x0 = x_t - sigma * v (flow
matching), not the noisy latent x_t the step leaves behind: early steps of x_t are mostly noise, x0 shows
the composition from the first step on. UniPC (the embedded sampler) keeps that estimate as its newest
`model_outputs` entry, so it costs nothing to get.
"""

import io
import time

import torch
import torch.nn.functional as F

PREVIEW_SIDE = 256          # longest side of a preview, pixels
PREVIEW_QUALITY = 60


class LivePreview:
    def __init__(self, model, max_side=PREVIEW_SIDE, device=None, dtype=None):
        self.model = model.eval()
        self.max_side = max_side
        p = next(model.parameters())
        self.device = device or p.device
        self.dtype = dtype or p.dtype
        self.model.to(self.device, self.dtype)

    @property
    def latent_channels(self):
        return self.model.config.latent_channels

    def frames(self, latents, max_side=-1):
        """[1, C, T, h, w] (or [C, T, h, w]) Wan latents -> uint8 numpy frames [4T - 3, H', W', 3], the longest
        side at most max_side (default: the preview's; None: full size): the latents are shrunk (area average)
        before decoding, which is what keeps a preview cheap."""
        max_side = self.max_side if max_side == -1 else max_side
        z = latents if latents.dim() == 5 else latents[None]
        z = z[:1].to(self.device, self.dtype)
        s = self.model.config.spatial_scale
        h, w = z.shape[-2:]
        factor = max(h * s, w * s) / max_side if max_side else 1
        if factor > 1:
            size = (max(1, round(h / factor)), max(1, round(w / factor)))
            z = F.interpolate(z.flatten(1, 2), size=size, mode='area').unflatten(1, z.shape[1:3])
        with torch.inference_mode():
            video = self.model.decode_frames(z.transpose(1, 2))[0]           # [F, 3, H, W] in [0, 1]
        return (video.float().permute(0, 2, 3, 1) * 255).round().to(torch.uint8).cpu().numpy()

    def render(self, latents, fps=16):
        """(webp bytes, milliseconds taken) of one preview."""
        t0 = time.perf_counter()
        data = webp(self.frames(latents), fps)
        return data, (time.perf_counter() - t0) * 1000


def webp(frames, fps=16, quality=PREVIEW_QUALITY):
    """Bytes of an animated, looping WebP of uint8 frames [F, H, W, 3]."""
    from PIL import Image
    images = [Image.fromarray(f) for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format='WEBP', save_all=True, append_images=images[1:], duration=max(1, round(1000 / fps)),
                   loop=0, quality=quality, method=0)
    return buf.getvalue()


def x0_of(pipe, latents):
    """The clean-video estimate after a step: UniPC's newest converted model output (x0 for flow matching
    with predict_x0), else the latents themselves."""
    outputs = getattr(pipe.scheduler, 'model_outputs', None) or []
    newest = next((o for o in reversed(outputs) if o is not None), None)
    return newest if newest is not None and newest.shape == latents.shape else latents
