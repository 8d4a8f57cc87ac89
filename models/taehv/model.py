"""TAEHV: a tiny video autoencoder for Wan latents, laid out so that the published `taew2_1.pth`
(Wan2.1 VAE, 16 channels) and `taew2_2.pth` (Wan2.2 TI2V-5B VAE, 48 channels) load as they are.

    model = load_taehv('taew2_1.pth')                    # widths, channels and patch read from the file
    latents = model.encode(video)                        # [B, 3, 4n+1, H, W] in [-1, 1] -> [B, C, n+1, H/s, W/s]
    video = model.decode(latents)                        # [B, C, n+1, h, w] -> [B, 3, 4n+1, h*s, w*s] in [-1, 1]

s = 8 * patch_size: 8 for taew2_1 (Wan2.1 VAE), 16 for taew2_2 (patch 2 before the encoder, after the decoder).
The latents are what the diffusion model sees: Wan's normalised latents ((z - mean) / std), no extra scale.

The network is two flat nn.Sequential stacks, `encoder` and `decoder`; their indices are the published
parameter names (`encoder.4.conv.2.weight`), so the layer order below must not change:

  encoder: conv(3p^2 -> w) relu | 3 x [time pool, conv stride 2, 3 memory blocks] | conv(w -> C)
  decoder: clamp conv(C -> d0) relu | 3 x [3 memory blocks, x2 upsample, time grow, conv(d_i -> d_i+1)] | relu conv(d3 -> 3p^2)

A memory block sees its input at frame t and its input at frame t-1 (zeros for the first frame), so the
network is causal in time. Time pools fold 2 consecutive frames into channels (4 frames -> 1 latent over
two of them); time grows unfold channels into 2 frames. Wan counts 4n+1 frames per n+1 latents: the encoder
repeats the last frame up to a multiple of 4, the decoder drops its first 3 output frames.
"""

from dataclasses import dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

TIME_STRIDE = 4           # Wan's VAEs: 4 frames per latent frame (after the first)


@dataclass(frozen=True)
class TAEHVConfig:
    latent_channels: int = 16
    patch_size: int = 1                               # pixel (un)shuffle around the network: 2 for taew2_2
    encoder_width: int = 64
    decoder_widths: tuple = (256, 128, 64, 64)
    encoder_time_downscale: tuple = (True, True, False)
    decoder_time_upscale: tuple = (False, True, True)
    decoder_space_upscale: tuple = (True, True, True)

    @property
    def spatial_scale(self):
        return 8 * self.patch_size

    def to_dict(self):
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)}

    @classmethod
    def from_dict(cls, d):
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


PRESETS = {
    'taew2_1': TAEHVConfig(latent_channels=16, patch_size=1),
    'taew2_2': TAEHVConfig(latent_channels=48, patch_size=2),
    # Test / demo widths: the published names and layer order, 8x narrower.
    'tiny-taew2_1': TAEHVConfig(latent_channels=16, patch_size=1, encoder_width=8, decoder_widths=(32, 16, 8, 8)),
    'tiny-taew2_2': TAEHVConfig(latent_channels=48, patch_size=2, encoder_width=8, decoder_widths=(32, 16, 8, 8)),
}


def conv3(n_in, n_out, stride=1, bias=True):
    return nn.Conv2d(n_in, n_out, 3, stride=stride, padding=1, bias=bias)


class Clamp(nn.Module):
    """Soft clamp of the latents to (-3, 3)."""

    def forward(self, x):
        return 3 * torch.tanh(x / 3)


class MemBlock(nn.Module):
    """Residual block over (this frame, previous frame): conv.0 sees both stacked along channels."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.conv = nn.Sequential(conv3(2 * n_in, n_out), nn.ReLU(), conv3(n_out, n_out), nn.ReLU(), conv3(n_out, n_out))
        self.skip = nn.Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out else nn.Identity()

    def forward(self, x, past):
        return F.relu(self.conv(torch.cat([x, past], 1)) + self.skip(x))


class TPool(nn.Module):
    """`stride` consecutive frames -> 1: frames stacked along channels, mixed by a 1x1 conv."""

    def __init__(self, channels, stride):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(channels * stride, channels, 1, bias=False)

    def forward(self, x):                                 # [N*T, C, H, W] -> [N*T/stride, C, H, W]
        nt, c, h, w = x.shape
        return self.conv(x.reshape(nt // self.stride, self.stride * c, h, w))


class TGrow(nn.Module):
    """1 frame -> `stride` frames: a 1x1 conv to stride x channels, unfolded along time."""

    def __init__(self, channels, stride):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(channels, channels * stride, 1, bias=False)

    def forward(self, x):                                 # [N*T, C, H, W] -> [N*T*stride, C, H, W]
        nt, c, h, w = x.shape
        return self.conv(x).reshape(nt * self.stride, c, h, w)


def run_frames(layers, x):
    """Apply a stack to a whole clip at once. x: [N, T, C, H, W] -> [N, T', C', H', W']."""
    n = x.shape[0]
    h = x.flatten(0, 1)
    for layer in layers:
        if isinstance(layer, MemBlock):
            frames = h.unflatten(0, (n, -1))
            past = torch.cat([torch.zeros_like(frames[:, :1]), frames[:, :-1]], 1)
            h = layer(h, past.flatten(0, 1))
        else:
            h = layer(h)
    return h.unflatten(0, (n, -1))


class TAEHV(nn.Module):
    def __init__(self, config: TAEHVConfig = PRESETS['taew2_1']):
        super().__init__()
        self.config = cfg = config
        p2 = 3 * cfg.patch_size ** 2
        w = cfg.encoder_width
        enc = [conv3(p2, w), nn.ReLU()]
        for pool in cfg.encoder_time_downscale:
            enc += [TPool(w, 2 if pool else 1), conv3(w, w, stride=2, bias=False), MemBlock(w, w), MemBlock(w, w),
                    MemBlock(w, w)]
        enc.append(conv3(w, cfg.latent_channels))
        self.encoder = nn.Sequential(*enc)
        d = cfg.decoder_widths
        dec = [Clamp(), conv3(cfg.latent_channels, d[0]), nn.ReLU()]
        for i, (grow, up) in enumerate(zip(cfg.decoder_time_upscale, cfg.decoder_space_upscale)):
            dec += [MemBlock(d[i], d[i]), MemBlock(d[i], d[i]), MemBlock(d[i], d[i]),
                    nn.Upsample(scale_factor=2 if up else 1), TGrow(d[i], 2 if grow else 1),
                    conv3(d[i], d[i + 1], bias=False)]
        dec += [nn.ReLU(), conv3(d[3], p2)]
        self.decoder = nn.Sequential(*dec)
        self.time_down = 2 ** sum(bool(t) for t in cfg.encoder_time_downscale)
        self.time_up = 2 ** sum(bool(t) for t in cfg.decoder_time_upscale)

    # -- TAEHV's own convention: NTCHW, pixels in [0, 1] ----------------------------------------
    def encode_frames(self, x):
        """[N, T, 3, H, W] in [0, 1] -> [N, ceil(T / 4), C, H/s, W/s]."""
        if self.config.patch_size > 1:
            x = F.pixel_unshuffle(x, self.config.patch_size)
        pad = -x.shape[1] % self.time_down
        if pad:                                          # repeat the last frame up to whole latents
            x = torch.cat([x, x[:, -1:].expand(-1, pad, -1, -1, -1)], 1)
        return run_frames(self.encoder, x)

    def decode_frames(self, z):
        """[N, T, C, h, w] -> [N, 4T - 3, 3, h*s, w*s] in [0, 1]."""
        x = run_frames(self.decoder, z)
        if self.config.patch_size > 1:
            x = F.pixel_shuffle(x, self.config.patch_size)
        return x[:, self.time_up - 1:].clamp(0, 1)

    # -- Wan's convention: NCTHW, pixels in [-1, 1], 4n+1 frames ---------------------------------
    def encode(self, video):
        """[B, 3, F, H, W] in [-1, 1] -> latents [B, C, (F - 1) // 4 + 1, H/s, W/s]."""
        z = self.encode_frames(((video + 1) / 2).transpose(1, 2))
        return z.transpose(1, 2)

    def decode(self, latents):
        """[B, C, T, h, w] -> [B, 3, 4T - 3, h*s, w*s] in [-1, 1]."""
        return self.decode_frames(latents.transpose(1, 2)).transpose(1, 2) * 2 - 1


# ------------------------------------------------------------------------------------------------
# Files
# ------------------------------------------------------------------------------------------------

def config_of_state_dict(sd, time=TIME_STRIDE):
    """The widths, latent channels and patch size a published-layout state dict holds. Time strides are
    Wan's (4x: pools in the first two encoder stages, grows in the last two decoder stages)."""
    if time != 4:
        raise ValueError('only 4x temporal compression (Wan) is supported')
    first = sd['encoder.0.weight']
    patch = round((first.shape[1] // 3) ** 0.5)
    return TAEHVConfig(latent_channels=sd['decoder.1.weight'].shape[1], patch_size=patch, encoder_width=first.shape[0],
                       decoder_widths=tuple(sd[f'decoder.{i}.weight'].shape[0] for i in (1, 8, 14, 20)))


def fit_time_grows(model, sd):
    """A file may store a time grow with more output frames than the model uses (a decoder trained with
    upscaling, run without it): keep the rows of the last frames, as the published loader does."""
    sd = dict(sd)
    for i, layer in enumerate(model.decoder):
        key = f'decoder.{i}.conv.weight'
        if isinstance(layer, TGrow) and key in sd and sd[key].shape[0] > layer.conv.weight.shape[0]:
            sd[key] = sd[key][-layer.conv.weight.shape[0]:]
    return sd


def read_state_dict(path):
    path = str(path)
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file
        return load_file(path)
    return torch.load(path, map_location='cpu', weights_only=True)


def peek_taehv(path):
    """The config of a TAEHV file in the published layout, read cheaply (a safetensors header, or a .pth
    memory-mapped: no weights are read), or None when the file is not one."""
    path = str(path)
    try:
        if path.endswith('.safetensors'):
            from safetensors import safe_open
            with safe_open(path, framework='pt', device='cpu') as f:
                names = set(f.keys())
                if not TAEHV_MARKERS <= names:
                    return None
                shapes = {k: f.get_slice(k).get_shape() for k in TAEHV_MARKERS}
        else:
            sd = torch.load(path, map_location='cpu', weights_only=True, mmap=True)
            if not isinstance(sd, dict) or not TAEHV_MARKERS <= set(sd):
                return None
            names, shapes = set(sd), {k: list(sd[k].shape) for k in TAEHV_MARKERS}
        if any(k.split('.')[0] not in ('encoder', 'decoder') for k in names):
            return None
        config = config_of_state_dict({k: torch.empty(v, device='meta') for k, v in shapes.items()})
        want = {k for k in TAEHV(config).to('meta').state_dict()}
        return config if want <= names else None
    except Exception:                     # unreadable, not a state dict, odd shapes: not a TAEHV
        return None


TAEHV_MARKERS = frozenset(f'{part}.weight' for part in ('encoder.0', 'decoder.1', 'decoder.8', 'decoder.14', 'decoder.20'))


def load_taehv(source, config: TAEHVConfig | None = None):
    """A TAEHV from a published-layout file (.pth or .safetensors) or state dict; strict: every name must match."""
    sd = read_state_dict(source) if not isinstance(source, dict) else source
    model = TAEHV(config or config_of_state_dict(sd))
    model.load_state_dict(fit_time_grows(model, sd), strict=True)
    return model


def save_taehv(model, path):
    """Write the published layout: .pth (torch.save of the state dict) or .safetensors."""
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    path = str(path)
    if path.endswith('.safetensors'):
        from safetensors.torch import save_file
        save_file(sd, path)
    else:
        torch.save(sd, path)


def write_tiny_taehv(out_dir, seed=0):
    """<out_dir>/taehv/tiny-taew2_1.pth and tiny-taew2_2.pth: the published layout at test widths, random
    (PyTorch's default initialisation, seeded). Rewritten only when missing. -> {preset: path}."""
    from pathlib import Path

    from utils.fsutil import atomic_save
    folder = Path(out_dir) / 'taehv'
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for k, name in enumerate(('tiny-taew2_1', 'tiny-taew2_2')):
        path = paths[name] = folder / f'{name}.pth'
        if not path.is_file():
            with torch.random.fork_rng():
                torch.manual_seed(seed + k)
                model = TAEHV(PRESETS[name])
            atomic_save(path, lambda tmp, m=model: save_taehv(m, tmp))
    return paths
