"""Decoding: frame-rate resampling by timestamps (constant and variable rate), seeking, geometry, rotation."""

import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

from tests.support.mediagen import frame_index, video
from utils.media import ffmpeg_exe, fit_geometry, probe, read_clip, read_image, read_mask


@pytest.fixture(scope='module')
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp('clips')
    return {
        'cfr15': video(d / 'cfr15.mp4', fps=15, frames=30),
        'cfr30': video(d / 'cfr30.mp4', fps=30, frames=60, gop=8),
        # frames 0-14 every 1/15 s, then one every 0.2 s: 15 + 15 frames over 1 + 15 * 0.2 = 4 s
        'vfr': video(d / 'vfr.mp4', fps=15, frames=30, vfr_expr='if(lt(N,15),N/15,1+(N-15)/5)'),
        'dir': d,
    }


def test_constant_rate_is_resampled_by_time(clips):
    # 15 fps -> 16 fps: output frame j shows source frame floor(j * 15 / 16)
    clip = read_clip(clips['cfr15'], fps=16, start=0, frames=32, size=(48, 32))
    assert clip.shape == (32, 32, 48, 3) and clip.dtype == torch.uint8
    assert frame_index(clip) == [j * 15 // 16 for j in range(32)]
    # 30 fps -> 16 fps: floor(j * 30 / 16), i.e. frames dropped evenly
    clip = read_clip(clips['cfr30'], fps=16, start=0, frames=32, size=(48, 32))
    assert frame_index(clip) == [(j * 30 // 16) % 32 for j in range(32)]


def test_a_late_start_seeks_and_matches_decoding_from_the_start(clips):
    full = read_clip(clips['cfr30'], fps=16, start=0, frames=30, size=(48, 32))
    late = read_clip(clips['cfr30'], fps=16, start=20, frames=10, size=(48, 32))   # 1.25 s: past SEEK_AFTER_S
    assert torch.equal(late, full[20:])


def test_variable_frame_rate_follows_timestamps(clips):
    info = probe(clips['vfr'])
    assert info.vfr and info.frames == 30 and info.duration == pytest.approx(4.0)
    assert any('variable frame rate' in n for n in info.notes)
    clip = read_clip(clips['vfr'], fps=10, start=0, frames=40, size=(48, 32))
    # t = j / 10: before 1 s the source runs at 15 fps (frame floor(15 t)); after, frame 15 + floor((t - 1) / 0.2)
    expected = [int(15 * j / 10 + 1e-9) if j < 10 else 15 + (j - 10) // 2 for j in range(40)]
    assert frame_index(clip) == expected
    assert probe(clips['cfr15']).vfr is False


def test_aspect_preserving_resize_then_centre_crop(tmp_path):
    assert fit_geometry(100, 50, 50, 50) == (100, 50, 25, 0)
    assert fit_geometry(100, 50, 20, 20) == (40, 20, 10, 0)
    assert fit_geometry(50, 100, 40, 20) == (40, 80, 0, 30)
    # left quarter red, middle half green, right quarter blue: a square crop sees only green
    a = np.zeros((50, 100, 3), np.uint8)
    a[:, :25] = (255, 0, 0)
    a[:, 25:75] = (0, 255, 0)
    a[:, 75:] = (0, 0, 255)
    Image.fromarray(a).save(tmp_path / 'bands.png')
    img = read_image(tmp_path / 'bands.png', (20, 20))
    assert img.shape == (1, 20, 20, 3)
    assert (img[0, :, :, 1] > 200).all() and (img[0, :, :, 0] < 40).all() and (img[0, :, :, 2] < 40).all()
    # masks use the same geometry and the red channel: white = 1 (train), black = 0
    m = np.zeros((50, 100, 3), np.uint8)
    m[:, 50:] = 255
    Image.fromarray(m).save(tmp_path / 'mask.png')
    mask = read_mask(tmp_path / 'mask.png', (40, 20))
    assert mask.shape == (20, 40) and mask.dtype == torch.float32
    assert mask[:, :16].max() == 0 and mask[:, 24:].min() == 1


def test_rotated_video_is_decoded_upright(clips):
    rotated = clips['dir'] / 'rot90.mp4'
    subprocess.run([ffmpeg_exe(), '-v', 'error', '-y', '-display_rotation', '90', '-i', str(clips['cfr15']),
                    '-c', 'copy', str(rotated)], check=True)
    info = probe(rotated)
    assert (info.width, info.height, info.rotation) == (32, 48, 90)
    upright = read_clip(rotated, fps=15, start=0, frames=5, size=(32, 48))
    plain = read_clip(clips['cfr15'], fps=15, start=0, frames=5, size=(48, 32))
    assert torch.equal(upright, torch.from_numpy(np.ascontiguousarray(np.rot90(plain.numpy(), k=1, axes=(1, 2)))))


def test_high_bit_depth_video_is_noted_and_decodes(tmp_path):
    path = tmp_path / 'ten.mp4'
    subprocess.run([ffmpeg_exe(), '-v', 'error', '-f', 'lavfi', '-i', 'testsrc=size=48x32:rate=16', '-t', '1',
                    '-c:v', 'libx264', '-pix_fmt', 'yuv420p10le', str(path)], check=True)
    info = probe(path)
    assert (info.bit_depth, info.frames) == (10, 16)
    assert '10-bit video (yuv420p10le) converted to 8-bit RGB' in info.notes
    clip = read_clip(path, fps=16, start=0, frames=9, size=(32, 32))
    assert clip.shape == (9, 32, 32, 3) and clip.dtype == torch.uint8 and clip.float().std() > 10


def test_edit_list_hidden_frames_are_not_counted(clips):
    """A stream copy cut mid-GOP keeps the frames before the cut in the file, hidden by an edit list."""
    trimmed = clips['dir'] / 'trimmed.mp4'
    subprocess.run([ffmpeg_exe(), '-v', 'error', '-y', '-ss', '0.5', '-i', str(clips['cfr30']), '-c', 'copy', str(trimmed)],
                   check=True)
    info = probe(trimmed)
    import av
    with av.open(str(trimmed)) as c:
        shown = sum(1 for _ in c.decode(video=0))
    assert info.frames == shown < 60
    n = int(info.duration * 16)
    clip = read_clip(trimmed, fps=16, start=0, frames=n, size=(48, 32))
    assert clip.shape[0] == n and frame_index(clip)[0] == 15          # the first frame shown is source frame 15
