"""Pieces of the TAEHV trainer (train_taehv.py) that need no process group: the trained module with its
losses, the patch discriminator, the clip pixels of dataset items, evaluation maths."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from utils.media import read_media

from .model import PRESETS, TAEHV, load_taehv


class PatchDiscriminator(nn.Module):
    """Real or decoded, per frame: one logit per patch. Input [N, 3, H, W] in [-1, 1]."""

    def __init__(self, width=32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * width, 1, 3, padding=1))

    def forward(self, frames):
        return self.net(frames)


def frames_of(video):
    """[B, 3, F, H, W] -> [B*F, 3, H, W]."""
    return video.transpose(1, 2).flatten(0, 1)


class Distill(nn.Module):
    """TAEHV and (with an adversarial weight) its discriminator: one module, one DeepSpeed engine, one optimizer.

    forward(pixels [B, 3, F, H, W] in [-1, 1], latents [B, C, T, h, w], adv_scale) -> losses:
      encoder        MSE(TAEHV.encode(clip), Wan VAE latent)
      decoder        MSE(TAEHV.decode(Wan VAE latent), clip)
      adversarial    hinge: the discriminator scores decoded frames with its weights detached, so this
                     term trains the decoder only
      discriminator  hinge: real clip frames vs decoded frames detached from the decoder
    loss = encoder_weight * encoder + decoder_weight * decoder + adv_scale * adversarial_weight * adversarial
           + discriminator"""

    def __init__(self, taehv, tcfg):
        super().__init__()
        self.taehv = taehv
        self.w_enc = tcfg['encoder_weight']
        self.w_dec = tcfg['decoder_weight']
        self.w_adv = tcfg['adversarial_weight']
        self.disc = PatchDiscriminator(tcfg['discriminator_width']) if self.w_adv > 0 else None

    def forward(self, pixels, latents, adv_scale=1.0):
        zero = pixels.new_zeros(())
        out = dict.fromkeys(('encoder', 'decoder', 'adversarial', 'discriminator'), zero)
        if self.w_enc:
            out['encoder'] = F.mse_loss(self.taehv.encode(pixels), latents)
        decoded = self.taehv.decode(latents) if self.w_dec or self.disc is not None else None
        if self.w_dec:
            out['decoder'] = F.mse_loss(decoded, pixels)
        total = self.w_enc * out['encoder'] + self.w_dec * out['decoder']
        if self.disc is not None:
            fake, real = frames_of(decoded), frames_of(pixels)
            frozen = {n: p.detach() for n, p in self.disc.named_parameters()}
            out['adversarial'] = -functional_call(self.disc, frozen, (fake,)).mean()
            out['discriminator'] = F.relu(1 - self.disc(real)).mean() + F.relu(1 + self.disc(fake.detach())).mean()
            total = total + adv_scale * self.w_adv * out['adversarial'] + out['discriminator']
        out['loss'] = total
        return out


def build_taehv(tcfg):
    """The TAEHV to train: from init_from (published layout), else random weights of a preset."""
    if tcfg.get('init_from'):
        return load_taehv(tcfg['init_from'])
    return TAEHV(PRESETS[tcfg['preset']])


def adversarial_scale(step, warmup):
    return 1.0 if not warmup else min(1.0, step / warmup)


def clip_pixels(item):
    """The clip a dataset item trains on, as the cache encoded it: float [3, F, H, W] in [-1, 1]."""
    w, h, frames = item.bucket
    px = read_media(item.path, item.kind, item.fps, item.clip_start, frames, (w, h))      # uint8 [F, H, W, 3]
    return torch.as_tensor(px).permute(3, 0, 1, 2).float().div(127.5).sub(1.0)


def mse_psnr(a, b):
    """MSE and PSNR (dB) of two videos in [-1, 1], measured in [0, 1] as image metrics are."""
    mse = float(((a.float() - b.float()) / 2).pow(2).mean())
    return mse, 10 * math.log10(1.0 / max(mse, 1e-12))


def side_by_side(*videos):
    """[3, F, H, W] videos in [-1, 1] -> uint8 [F, H, W * n, 3] (original | reference | TAEHV)."""
    row = torch.cat([v.float() for v in videos], dim=-1)
    return ((row.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).numpy()
