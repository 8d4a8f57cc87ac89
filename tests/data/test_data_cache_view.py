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
