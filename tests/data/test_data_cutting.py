"""Trim and split write new clips of the right length (probed and decoded), with the caption copied,
and leave the original untouched."""

import pytest

from api.services.data.caption_files import CaptionBook
from api.services.data.cutting import segments
from tests.support import mediagen
from tests.support.data import API, scene_video, sha256
from tests.support.mediagen import frame_index
from utils.media import probe, read_clip


def test_trim_makes_a_clip_of_that_range(make_app, data_root):
    c = make_app().test_client()
    folder = data_root / 'datasets' / 'd'
    folder.mkdir()
    mediagen.video(folder / 'long.mp4', 64, 48, 16, 64)                       # 4 s, frame i has grey 8*i
    CaptionBook(folder).write('long.mp4', 'a square, as a model saw it', by='machine', model='vlm')
    before = sha256(folder / 'long.mp4')
    r = c.post(f'{API}/datasets/d/trim', json={'file': 'long.mp4', 'start': 1.0, 'end': 2.5})
    assert r.status_code == 201 and r.get_json()['file'] == 'long_1.00-2.50s.mp4'
    out = probe(folder / 'long_1.00-2.50s.mp4')
    assert (out.frames, out.fps, out.width, out.height) == (24, 16.0, 64, 48) and abs(out.duration - 1.5) < 1e-6
    shown = frame_index(read_clip(folder / 'long_1.00-2.50s.mp4', 16, 0, 24, (64, 48)))
    assert shown == [(16 + j) % 32 for j in range(24)]                       # source frames 16..39 (grey wraps at 32)
    assert sha256(folder / 'long.mp4') == before
    copied = CaptionBook(folder).read('long_1.00-2.50s.mp4')
    assert copied['text'] == 'a square, as a model saw it' and copied['origin'] == 'machine'
    again = c.post(f'{API}/datasets/d/trim', json={'file': 'long.mp4', 'start': 1.0, 'end': 2.5}).get_json()
    assert again['file'] == 'long_1.00-2.50s (1).mp4'                           # never overwritten
    for bad in ({'start': 2.0, 'end': 1.0}, {'start': -1, 'end': 1}, {'start': 5, 'end': 6}):
        r = c.post(f'{API}/datasets/d/trim', json={'file': 'long.mp4', **bad})
        assert r.status_code == 422 and r.get_json()['error']['field'] == 'start', bad
    mediagen.image(folder / 'still.png')
    assert c.post(f'{API}/datasets/d/trim', json={'file': 'still.png', 'start': 0, 'end': 1}).status_code == 422
    assert not [p for p in (folder / '.studio' / 'tmp').iterdir()]


@pytest.mark.slow
def test_split_at_scene_changes(make_app, data_root):
    c = make_app().test_client()
    folder = data_root / 'datasets' / 'd'
    folder.mkdir()
    scene_video(folder / 'three.mp4', [(1.0, 20), (2.0, 230), (1.5, 120)])   # cuts at 1.0 s and 3.0 s
    mediagen.caption(folder / 'three.mp4', 'three scenes')
    before = sha256(folder / 'three.mp4')
    dry = c.post(f'{API}/datasets/d/split', json={'file': 'three.mp4', 'dry_run': True}).get_json()
    assert [round(x, 2) for x in dry['cuts']] == [1.0, 3.0]
    assert [(s['start'], s['end'], s['file']) for s in dry['segments']] == [(0.0, 1.0, None), (1.0, 3.0, None), (3.0, 4.5, None)]
    assert not (folder / 'three_scene01.mp4').exists()
    res = c.post(f'{API}/datasets/d/split', json={'file': 'three.mp4', 'min_length': 0.5}).get_json()
    names = [s['file'] for s in res['segments']]
    assert names == ['three_scene01.mp4', 'three_scene02.mp4', 'three_scene03.mp4']
    lengths = [probe(folder / n).frames for n in names]
    assert lengths == [16, 32, 24]
    greys = [float(read_clip(folder / n, 16, 0, 1, (64, 48))[0].float().mean()) for n in names]
    assert [abs(g - e) < 8 for g, e in zip(greys, (20, 230, 120))] == [True] * 3, greys
    assert all((folder / n).with_suffix('.txt').read_text().strip() == 'three scenes' for n in names)
    assert sha256(folder / 'three.mp4') == before
    # a first piece shorter than min_length joins the next one
    merged = c.post(f'{API}/datasets/d/split', json={'file': 'three.mp4', 'min_length': 1.2, 'dry_run': True}).get_json()
    assert [(s['start'], s['end']) for s in merged['segments']] == [(0.0, 3.0), (3.0, 4.5)]


def test_segments_merge_short_pieces():
    assert segments(10.0, [2.0, 5.0], 1.0) == [(0.0, 2.0), (2.0, 5.0), (5.0, 10.0)]
    assert segments(10.0, [0.5, 5.0, 9.8], 1.0) == [(0.0, 5.0), (5.0, 10.0)]
    assert segments(10.0, [], 1.0) == [(0.0, 10.0)]
    assert segments(1.0, [0.3, 0.6], 2.0) == [(0.0, 1.0)]
