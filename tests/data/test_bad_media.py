"""Every kind of bad or odd input is reported by name with its reason, and the rest still builds."""

import json
import os
import re

import numpy as np
import pytest
from PIL import Image

from tests.support.mediagen import caption, image, video
from utils.config import validate_dataset
from utils.dataset import MediaSpec, build_dataset, format_report
from utils.media import MediaError, probe, read_image

SPEC = MediaSpec(framerate=16, size_multiple=16)


def cfg_for(folder, **extra):
    # aspect-ratio buckets (not diffusion-pipe's square default): the expected buckets below keep each file's shape
    cfg, issues = validate_dataset({'resolutions': [32], 'frame_buckets': [1, 17], 'enable_ar_bucket': True,
                                    'directory': [{'path': str(folder), **extra}]},
                                   str(folder / 'dataset.toml'))
    assert not issues, issues
    return cfg


@pytest.fixture(scope='module')
def bad_folder(tmp_path_factory):
    d = tmp_path_factory.mktemp('bad')
    good = video(d / 'good.mp4', 48, 32, fps=16, frames=40)
    caption(good, 'a good clip')
    caption(video(d / 'vfr.mp4', 48, 32, fps=15, frames=30, vfr_expr='if(lt(N,15),N/15,1+(N-15)/5)'), 'vfr')
    caption(video(d / 'short.mp4', 48, 32, fps=16, frames=13), 'short')
    data = good.read_bytes()
    (d / 'truncated.mp4').write_bytes(data[:len(data) * 2 // 3])        # index intact, frames cut off
    (d / 'cut_header.mp4').write_bytes(data[:300])                      # cut inside the index box
    (d / 'empty.mp4').write_bytes(b'')
    (d / 'notes.mp4').write_text('meeting notes: buy milk\n')
    for name in ('truncated', 'cut_header', 'empty', 'notes'):
        caption(d / f'{name}.mp4', name)
    image(d / 'latin1.png', 48, 32)
    (d / 'latin1.txt').write_bytes('un caf\xe9'.encode('latin-1'))
    rgba = np.zeros((32, 48, 4), np.uint8)
    rgba[:, :24] = (255, 0, 0, 255)                                     # left opaque red, right transparent
    Image.fromarray(rgba, 'RGBA').save(d / 'rgba.png')
    Image.fromarray(np.full((32, 48), 40000, np.uint16)).save(d / 'gray16.png')
    Image.new('CMYK', (48, 32), (0, 0, 255, 0)).save(d / 'cmyk.jpg', quality=95)   # full yellow ink
    image(d / 'palette.png', 48, 32, mode='P')
    exif = Image.Exif()
    exif[0x0112] = 6                                                    # stored 32x48, shown rotated 90 degrees
    Image.new('RGB', (32, 48), (10, 200, 10)).save(d / 'exif.jpg', exif=exif)
    image(d / 'tiny.png', 20, 14)
    for name in ('rgba', 'gray16', 'cmyk', 'palette', 'exif', 'tiny'):
        caption(d / f'{name}.png', name)
    (d / 'exif.txt').write_text('exif')
    image(d / 'nocap.png', 48, 32)
    (d / 'stray.xyz').write_text('?')
    (d / 'metadata.csv').write_text('video,prompt\ngood.mp4,"a clip, with a comma\nand a second line"\ngone.mp4,lost\n')
    return d


@pytest.fixture(scope='module')
def report(bad_folder):
    return build_dataset(cfg_for(bad_folder), SPEC, 'single_beginning').report


def by_name(report):
    return {f['name']: f for f in report['files']}


@pytest.mark.parametrize('name, reason', [
    ('truncated.mp4', r"unreadable: truncated: the file is \d+ bytes but its frame index needs \d+ \(\d+ of 40 frames present\)"),
    ('cut_header.mp4', r"unreadable: truncated: the 'moov' box needs \d+ bytes but the file has 300"),
    ('empty.mp4', r'unreadable: empty file \(0 bytes\)'),
    ('notes.mp4', r"unreadable: not a video FFmpeg can read \(it is a text file starting 'meeting notes: buy milk'\)"),
    ('latin1.png', r'caption latin1.txt is not UTF-8 text \(byte 0xe9 at position 6\)'),
    ('tiny.png', r'too small: 20x14, bucket needs 48x32 \(more than 2x enlargement\)'),
    ('short.mp4', r'too short: 13 frames at 16 fps, smallest frame bucket is 17'),
    ('nocap.png', r'no caption'),
])
def test_each_bad_file_is_dropped_with_its_reason(report, name, reason):
    f = by_name(report)[name]
    assert f['status'] == 'dropped'
    assert f['reason'] is not None and re.fullmatch(reason, f['reason']), f['reason']


def test_the_rest_of_the_dataset_still_builds(bad_folder, report):
    files = by_name(report)
    used = sorted(n for n, f in files.items() if f['status'] == 'used')
    assert used == ['cmyk.jpg', 'exif.jpg', 'good.mp4', 'gray16.png', 'palette.png', 'rgba.png', 'vfr.mp4']
    assert files['stray.xyz']['status'] == 'ignored'
    assert "metadata.csv row 3: 'gone.mp4' not found" in ' '.join(report['problems'])
    # the CSV row with a quoted comma and newline is good.mp4's caption (metadata beats the sidecar)
    ds = build_dataset(cfg_for(bad_folder), SPEC, 'single_beginning')
    good = [it for it in ds.items if it.path.endswith('good.mp4')]
    assert good[0].captions == ['a clip, with a comma and a second line']     # cleaned as Wan cleans prompts
    assert files['good.mp4']['caption_source'] == 'metadata.csv'
    text = format_report(report)
    for name, f in files.items():
        if f['status'] == 'dropped':
            assert f"{f['path']}: {f['reason']}" in text
    json.dumps(report)                                                  # plain JSON


def test_converted_files_carry_notes(report):
    files = by_name(report)
    assert 'RGBA with alpha: composited on white' in files['rgba.png']['notes']
    assert '16-bit scaled to 8-bit' in files['gray16.png']['notes']
    assert 'CMYK converted to RGB' in files['cmyk.jpg']['notes']
    assert 'palette converted to RGB' in files['palette.png']['notes']
    assert 'EXIF orientation 6 applied' in files['exif.jpg']['notes']
    vfr = files['vfr.mp4']
    assert vfr['media']['vfr'] and any(n.startswith('variable frame rate') for n in vfr['notes'])
    assert vfr['media']['frames_at_model_fps'] == 64                    # 4.0 s at 16 fps
    assert vfr['buckets'][0]['bucket'] == [48, 32, 17]


def test_conversions_give_the_right_pixels(bad_folder):
    rgba = read_image(bad_folder / 'rgba.png', (48, 32))[0]
    assert rgba[16, 4].tolist() == [255, 0, 0] and rgba[16, 44].tolist() == [255, 255, 255]   # alpha on white
    g16 = read_image(bad_folder / 'gray16.png', (48, 32))[0]
    assert g16[10, 10].tolist() == [156, 156, 156]                    # 40000 / 257 = 155.6
    cmyk = read_image(bad_folder / 'cmyk.jpg', (48, 32))[0]
    r, g, b = cmyk[16, 24].tolist()
    assert r > 200 and g > 200 and b < 60                             # full yellow ink -> yellow
    exif = read_image(bad_folder / 'exif.jpg', (48, 32))
    assert exif.shape == (1, 32, 48, 3)
    assert probe(bad_folder / 'exif.jpg').width == 48


def test_a_file_that_disappears_is_reported_not_fatal(bad_folder, tmp_path):
    with pytest.raises(MediaError, match='file not found'):
        probe(tmp_path / 'nothing.mp4')
    # a folder whose probe cache says 'fine' for a file that has since changed is probed again
    d = tmp_path / 'changing'
    d.mkdir()
    caption(video(d / 'a.mp4', 48, 32, frames=40), 'a')
    assert by_name(build_dataset(cfg_for(d), SPEC).report)['a.mp4']['status'] == 'used'
    (d / 'a.mp4').write_bytes(b'')
    assert by_name(build_dataset(cfg_for(d), SPEC).report)['a.mp4']['reason'] == 'unreadable: empty file (0 bytes)'
    os.unlink(d / 'a.mp4')
    assert by_name(build_dataset(cfg_for(d), SPEC).report) == {}


def test_mask_problems(tmp_path):
    d, masks = tmp_path / 'data', tmp_path / 'masks'
    d.mkdir()
    masks.mkdir()
    for name in ('ok', 'wrong_shape', 'unmasked'):
        caption(image(d / f'{name}.png', 48, 32), name)
    image(masks / 'ok.png', 96, 64, color=(255, 255, 255))             # same aspect ratio, other size: fine
    image(masks / 'wrong_shape.png', 32, 32, color=(255, 255, 255))
    ds = build_dataset(cfg_for(d, mask_path=str(masks)), SPEC)
    files = by_name(ds.report)
    assert files['ok.png']['status'] == 'used'
    assert [it.mask_path for it in ds.items if it.path.endswith('ok.png')] == [str(masks / 'ok.png')]
    assert files['wrong_shape.png']['reason'] == 'mask wrong_shape.png is 32x32, its media 48x32: aspect ratios differ'
    assert 'no mask with this name in mask_path: trained unmasked' in files['unmasked.png']['notes']
