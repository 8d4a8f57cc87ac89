"""TAEHV (models/taehv/model.py): the published taew2_1 / taew2_2 files load strictly, and encode / decode
follow Wan's latent layout (4x time with 4n+1 frames, 8x space; 16x with 48 channels for taew2_2)."""

import pytest
import torch

from models.taehv.model import PRESETS, TAEHV, config_of_state_dict, load_taehv, save_taehv


def _memblock(prefix, c):
    return {f'{prefix}.conv.0.weight': (c, 2 * c, 3, 3), f'{prefix}.conv.0.bias': (c,),
            f'{prefix}.conv.2.weight': (c, c, 3, 3), f'{prefix}.conv.2.bias': (c,),
            f'{prefix}.conv.4.weight': (c, c, 3, 3), f'{prefix}.conv.4.bias': (c,)}


def published_layout(latent_channels, patch):
    """Names and shapes of taew2_1.pth / taew2_2.pth as the published reference (madebyollin/taehv,
    taehv.py: TAEHV.encoder / .decoder nn.Sequential indices) defines them."""
    io = 3 * patch * patch
    shapes = {'encoder.0.weight': (64, io, 3, 3), 'encoder.0.bias': (64,),
              'encoder.2.conv.weight': (64, 128, 1, 1),            # time pool x2
              'encoder.3.weight': (64, 64, 3, 3),                  # stride-2 conv, no bias
              'encoder.7.conv.weight': (64, 128, 1, 1),            # time pool x2
              'encoder.8.weight': (64, 64, 3, 3),
              'encoder.12.conv.weight': (64, 64, 1, 1),            # time pool x1
              'encoder.13.weight': (64, 64, 3, 3),
              'encoder.17.weight': (latent_channels, 64, 3, 3), 'encoder.17.bias': (latent_channels,),
              'decoder.1.weight': (256, latent_channels, 3, 3), 'decoder.1.bias': (256,),
              'decoder.7.conv.weight': (256, 256, 1, 1),           # time grow x1
              'decoder.8.weight': (128, 256, 3, 3),
              'decoder.13.conv.weight': (256, 128, 1, 1),          # time grow x2
              'decoder.14.weight': (64, 128, 3, 3),
              'decoder.19.conv.weight': (128, 64, 1, 1),           # time grow x2
              'decoder.20.weight': (64, 64, 3, 3),
              'decoder.22.weight': (io, 64, 3, 3), 'decoder.22.bias': (io,)}
    for i in (4, 5, 6, 9, 10, 11, 14, 15, 16):
        shapes.update(_memblock(f'encoder.{i}', 64))
    for i, c in ((3, 256), (4, 256), (5, 256), (9, 128), (10, 128), (11, 128), (15, 64), (16, 64), (17, 64)):
        shapes.update(_memblock(f'decoder.{i}', c))
    return shapes


@pytest.mark.parametrize('name,channels,patch', [('taew2_1', 16, 1), ('taew2_2', 48, 2)])
def test_published_state_dict_loads_strictly(name, channels, patch):
    layout = published_layout(channels, patch)
    sd = {k: torch.empty(s, device='meta') for k, s in layout.items()}
    assert config_of_state_dict(sd) == PRESETS[name]
    with torch.device('meta'):
        model = TAEHV(PRESETS[name])
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == layout
    model.load_state_dict(sd, strict=True, assign=True)


def test_a_wider_time_grow_keeps_its_last_frames():
    """A file whose first time grow has 2x the rows (trained with upscaling there) still loads: the last rows."""
    cfg = PRESETS['tiny-taew2_1']
    sd = TAEHV(cfg).state_dict()
    wide = torch.randn(2 * sd['decoder.7.conv.weight'].shape[0], *sd['decoder.7.conv.weight'].shape[1:])
    model = load_taehv({**sd, 'decoder.7.conv.weight': wide}, cfg)
    assert torch.equal(model.decoder[7].conv.weight, wide[wide.shape[0] // 2:])


@pytest.mark.parametrize('name,frames,size,latent', [
    ('taew2_1', 9, (32, 48), (16, 3, 4, 6)), ('taew2_2', 13, (32, 64), (48, 4, 2, 4)),
    ('tiny-taew2_1', 1, (16, 16), (16, 1, 2, 2)), ('tiny-taew2_2', 17, (32, 32), (48, 5, 2, 2))])
@torch.no_grad()
def test_encode_decode_follow_wans_frame_convention(name, frames, size, latent):
    torch.manual_seed(0)
    model = TAEHV(PRESETS[name]).eval()
    video = torch.rand(2, 3, frames, *size) * 2 - 1
    z = model.encode(video)
    assert tuple(z.shape) == (2, *latent)                 # (F - 1) / 4 + 1 latents, H / s, W / s
    out = model.decode(z)
    assert tuple(out.shape) == (2, 3, frames, *size)      # 4T - 3 frames back
    assert out.min() >= -1 and out.max() <= 1


@torch.no_grad()
def test_decoding_is_causal_in_time():
    """Frame t of the output depends on latents up to t only (memory blocks look back one frame)."""
    torch.manual_seed(0)
    model = TAEHV(PRESETS['tiny-taew2_1']).eval()
    z = torch.randn(1, 16, 4, 4, 4)
    a = model.decode(z)
    z2 = z.clone()
    z2[:, :, 3] += 1
    b = model.decode(z2)
    assert torch.equal(a[:, :, :9], b[:, :, :9]) and not torch.equal(a[:, :, 9:], b[:, :, 9:])


def test_saved_file_round_trips(tmp_path):
    model = TAEHV(PRESETS['tiny-taew2_2'])
    for name in ('m.pth', 'm.safetensors'):
        save_taehv(model, tmp_path / name)
        back = load_taehv(tmp_path / name)
        assert back.config == model.config
        assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), back.state_dict().values()))
