"""Thumbnails and frame strips come from the clip itself (FFmpeg; Pillow for images), are cached by
file size and mtime, and the clip plays in the page: Range requests, or an H.264 copy for codecs a
browser cannot play."""

import io

import numpy as np
from PIL import Image

from api.services.data.datasets import media_files
from tests.support import mediagen
from tests.support.data import API, mpeg4_avi, small_dataset
from tests.support.memory import peak_rss
from utils.media import probe


def _image(data):
    img = Image.open(io.BytesIO(data))
    assert img.format == 'JPEG'
    return img


def _grey(img):
    """Mean grey level of the frame's left column (away from the moving white square)."""
    return float(np.asarray(img.convert('L'))[:, :2].mean())


def test_thumbnails_of_video_and_image_are_cached_by_size_and_mtime(make_app, data_root):
    c = make_app().test_client()
    folder = small_dataset(data_root / 'datasets' / 'd')
    r = c.get(f'{API}/datasets/d/thumbnail/clip.mp4')
    assert r.status_code == 200 and r.mimetype == 'image/jpeg'
    thumb = _image(r.data)
    assert thumb.size == (320, 240)                              # 64x48 scaled to fit 320, aspect kept
    assert abs(_grey(thumb) - 32) < 6                            # frame 4 (0.25 s = 10% of 2.5 s): grey 8*4
    img = _image(c.get(f'{API}/datasets/d/thumbnail/still.png').data)
    assert img.size == (48, 32) and np.asarray(img)[16, 24, 0] > 150      # the red test image, not enlarged
    cached = list((folder / '.studio' / 'previews').glob('*.thumb.jpg'))
    assert len(cached) == 2
    stamp = {p: p.stat().st_mtime_ns for p in cached}
    c.get(f'{API}/datasets/d/thumbnail/clip.mp4')
    assert {p: p.stat().st_mtime_ns for p in cached} == stamp   # served from the cache
    mediagen.video(folder / 'clip.mp4', 96, 48, 16, 40)           # the file changes: a fresh thumbnail
    assert _image(c.get(f'{API}/datasets/d/thumbnail/clip.mp4').data).size == (320, 160)
    assert len(list((folder / '.studio' / 'previews').glob('*.thumb.jpg'))) == 2


def test_frame_strip_shows_frames_spread_over_the_clip(make_app, data_root):
    c = make_app().test_client()
    small_dataset(data_root / 'datasets' / 'd')
    strip = _image(c.get(f'{API}/datasets/d/strip/clip.mp4?n=4').data)
    assert strip.size == (4 * 120, 90)
    greys = [_grey(strip.crop((k * 120, 0, k * 120 + 120, 90))) for k in range(4)]
    expected = [8 * round((k + 0.5) * 40 / 4) % 256 for k in range(4)]    # frames 5, 15, 25, 35 of 40
    assert all(abs(g - e) < 10 for g, e in zip(greys, expected)), (greys, expected)
    assert c.get(f'{API}/datasets/d/strip/still.png').status_code == 200


def test_media_is_served_with_range_requests(make_app, data_root):
    c = make_app().test_client()
    folder = small_dataset(data_root / 'datasets' / 'd')
    whole = (folder / 'clip.mp4').read_bytes()
    r = c.get(f'{API}/datasets/d/media/clip.mp4', headers={'Range': 'bytes=100-299'})
    assert r.status_code == 206 and r.data == whole[100:300]
    assert r.headers['Content-Range'] == f'bytes 100-299/{len(whole)}' and r.headers['Accept-Ranges'] == 'bytes'
    r = c.get(f'{API}/datasets/d/preview/clip.mp4')
    assert r.data == whole and r.headers['X-Preview-Copy'] == 'false'
    assert c.get(f'{API}/datasets/d/files/clip.mp4').get_json()['playable'] is True


def test_a_codec_browsers_cannot_play_gets_an_h264_preview_copy(make_app, data_root, tmp_path):
    c = make_app().test_client()
    folder = data_root / 'datasets' / 'd'
    folder.mkdir()
    mpeg4_avi(folder / 'old.avi', seconds=2)
    info = c.get(f'{API}/datasets/d/files/old.avi').get_json()
    assert info['playable'] is False and info['media']['frames'] == 32
    r = c.get(f'{API}/datasets/d/preview/old.avi', headers={'Range': 'bytes=0-'})
    assert r.status_code in (200, 206) and r.headers['X-Preview-Copy'] == 'true'
    copy = tmp_path / 'copy.mp4'
    copy.write_bytes(r.data)
    p = probe(copy)
    assert (p.frames, p.width, p.height, p.mode) == (32, 64, 48, 'yuv420p')
    from api.services.data.media_previews import stream_info
    assert stream_info(copy)[0] == 'h264'
    assert [p.name for p in media_files(folder)] == ['old.avi']               # the copy is no clip of the dataset


def test_a_huge_still_is_refused_from_its_header_and_memory_stays_bounded(make_app, data_root):
    # 12500 x 12500 1-bit PNG: a 34 KB file that decodes to 156 MP (an RGB copy: 470 MB)
    import time

    c = make_app().test_client()
    folder = data_root / 'datasets' / 'd'
    folder.mkdir(parents=True)
    Image.new('1', (12500, 12500), 1).save(folder / 'huge.png', optimize=True)
    assert (folder / 'huge.png').stat().st_size < 100_000
    Image.new('RGB', (64, 48)).save(folder / 'small.png')
    assert c.get(f'{API}/datasets/d/thumbnail/small.png').status_code == 200        # warm up (imports, caches)
    with peak_rss() as grown:
        t0 = time.monotonic()
        answers = [c.get(f'{API}/datasets/d/{what}/huge.png') for what in ('thumbnail', 'strip')]
        took = time.monotonic() - t0
    for r in answers:
        assert r.status_code == 422, r.status_code
        msg = r.get_json()['error']['message']
        assert 'huge.png' in msg and '12500x12500' in msg and '156,250,000 pixels' in msg
    assert grown.mib < 100, f'RSS grew by {grown.mib:.0f} MiB'
    assert took < 5


def test_media_work_is_bounded_and_a_request_beyond_gets_503(make_app, data_root):
    app = make_app(media_slots=1, media_wait_s=0.2)
    c = app.test_client()
    small_dataset(data_root / 'datasets' / 'd')
    gate = app.extensions['odeo'].data.previews.gate
    assert gate._sem.acquire(timeout=1)              # another request is busy with media
    try:
        r = c.get(f'{API}/datasets/d/thumbnail/still.png')
    finally:
        gate._sem.release()
    assert r.status_code == 503 and r.headers['Retry-After'] == '1'
    assert 'still.png' in r.get_json()['error']['message']
    assert c.get(f'{API}/datasets/d/thumbnail/still.png').status_code == 200
