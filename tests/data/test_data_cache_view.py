"""What the latent cache holds: the clips cached for a model variant are listed with their frame count and
size, and one is decoded back to a video by a TAEHV under the model roots (the bucket's frames and size);
a TAEHV of other latent channels, an unknown item and an unknown variant are refused by name."""

import torch

from models.taehv.model import write_tiny_taehv
from tests.support.inference import read_video
from utils.cache import Store

API = '/api/v1'


def test_a_cached_clip_decodes_back_to_its_bucket(make_app, data_root):
    folder = data_root / 'datasets' / 'clips'
    folder.mkdir(parents=True)
    (folder / 'fox.mp4').write_bytes(b'')
    taehv = write_tiny_taehv(data_root / 'models' / 'tiny')
    store = Store(folder / 'cache' / 'wan2.1-t2v-1.3b')          # as a training run's cache build leaves it
    latents = torch.randn(16, 3, 6, 8)                           # a 9-frame 64x48 bucket
    store.commit({'lfox': ({'kind': 'latent', 'item': 'a1b2c3', 'source': str(folder / 'fox.mp4')},
                           {'latents': latents}),
                  'tcap': ({'kind': 'text'}, {'text_embeds': torch.zeros(4, 8)})}, rank=0)
    app = make_app()
    c = app.test_client()
    listed = c.get(f'{API}/datasets/clips/cache/wan2.1-t2v-1.3b').get_json()
    assert [(i['item'], i['frames'], i['width'], i['height']) for i in listed['items']] == [('a1b2c3', 9, 64, 48)]
    assert [t['latent_channels'] for t in listed['taehv']] == [16]
    r = c.get(f'{API}/datasets/clips/cache/wan2.1-t2v-1.3b/a1b2c3.mp4')
    assert r.status_code == 200 and r.mimetype == 'video/mp4'
    video = data_root / 'decoded.mp4'
    video.write_bytes(r.data)
    frames, rate, codec = read_video(video)
    assert frames.shape == (9, 48, 64, 3) and codec == 'h264' and rate == 16
    small = c.get(f'{API}/datasets/clips/cache/wan2.1-t2v-1.3b/a1b2c3.mp4?max_side=32')
    (data_root / 'small.mp4').write_bytes(small.data)
    assert read_video(data_root / 'small.mp4')[0].shape == (9, 24, 32, 3)
    wrong = c.get(f'{API}/datasets/clips/cache/wan2.1-t2v-1.3b/a1b2c3.mp4?taehv={taehv["tiny-taew2_2"]}')
    assert wrong.status_code == 422 and wrong.get_json()['error']['field'] == 'taehv'
    assert c.get(f'{API}/datasets/clips/cache/wan2.1-t2v-1.3b/ffff.mp4').status_code == 404
    assert c.get(f'{API}/datasets/clips/cache/sd15/a1b2c3.mp4').status_code == 404


def test_decodes_share_the_media_gate_and_only_the_newest_are_kept(make_app, data_root, monkeypatch):
    """Decoding is heavy: it takes one of the studio's media slots (none free within the wait: 503 with
    Retry-After, nothing written), and the decoded copies of a variant are pruned to the most recently used."""
    from api.services.data import cache_view
    folder = data_root / 'datasets' / 'clips'
    folder.mkdir(parents=True)
    write_tiny_taehv(data_root / 'models' / 'tiny')
    store = Store(folder / 'cache' / 'wan2.1-t2v-1.3b')
    store.commit({f'l{i}': ({'kind': 'latent', 'item': f'item{i}', 'source': str(folder / f'{i}.mp4')},
                            {'latents': torch.randn(16, 1, 2, 2)}) for i in range(4)}, rank=0)
    app = make_app(media_slots=1, media_wait_s=0.2)
    c = app.test_client()
    url = f'{API}/datasets/clips/cache/wan2.1-t2v-1.3b/item%d.mp4'
    decoded = folder / cache_view.DECODED / 'wan2.1-t2v-1.3b'

    gate = app.extensions['odeo'].data.previews.gate
    assert gate._sem.acquire(timeout=1)                 # another media operation holds the only slot
    try:
        busy = c.get(url % 0)
        assert busy.status_code == 503 and busy.headers['Retry-After'] == '1'
        assert 'media operations' in busy.get_json()['error']['message']
        assert not decoded.exists() or not list(decoded.iterdir())
    finally:
        gate._sem.release()

    monkeypatch.setattr(cache_view, 'DECODED_KEEP', 2)
    names = {}
    for i in (0, 1, 2):
        before = {p.name for p in decoded.glob('*.mp4')}
        assert c.get(url % i).status_code == 200
        names[i] = ({p.name for p in decoded.glob('*.mp4')} - before).pop()
    assert {p.name for p in decoded.glob('*.mp4')} == {names[1], names[2]}          # item0's copy made room
    assert c.get(url % 1).status_code == 200                    # served from its copy, now the most recent
    assert c.get(url % 3).status_code == 200
    left = {p.name for p in decoded.glob('*.mp4')}
    assert names[1] in left and names[2] not in left and len(left) == 2
    assert not any(p.name.startswith('.') for p in decoded.iterdir())     # no temporary file left behind
