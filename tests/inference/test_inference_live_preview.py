"""Live previews: the TAEHV preview writer (latents shrunk, decoded, written as a looping animated WebP),
the denoiser's clean-video estimate as what is decoded, an embedded render announcing one `preview` event
per step, keeping only the newest file per cell and writing a TAEHV video of the final latents before the
full VAE's, and the catalog finding TAEHV files that a task then
picks (checked against its model's latent channels) for every run it queues."""

import io
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from api.jobs import infer
from models.taehv.model import PRESETS, TAEHV, write_tiny_taehv
from models.taehv.preview import LivePreview, webp, x0_of
from tests.support.inference import read_video
from tests.support.trainer import events

API = '/api/v1'


pytestmark = pytest.mark.usefixtures('one_torch_thread')


def webp_frames(data):
    image = Image.open(io.BytesIO(data))
    frames = []
    for i in range(image.n_frames):
        image.seek(i)
        frames.append(np.asarray(image.convert('RGB')))
    return image, frames


def test_a_preview_is_a_small_looping_webp_of_every_frame():
    torch.manual_seed(0)
    preview = LivePreview(TAEHV(PRESETS['tiny-taew2_1']), max_side=128)
    latents = torch.randn(1, 16, 3, 30, 40)                     # a 240x320, 9-frame video's latents
    frames = preview.frames(latents)
    assert frames.shape == (9, 96, 128, 3) and frames.dtype == np.uint8            # longest side 128
    assert preview.frames(latents[:, :, :, :6, :8]).shape == (9, 48, 64, 3)       # small ones keep their size
    moving = np.stack([np.full((48, 64, 3), 20 * i, np.uint8) for i in range(9)])
    image, decoded = webp_frames(webp(moving, fps=16))
    assert image.format == 'WEBP' and image.info['loop'] == 0 and len(decoded) == 9
    assert image.info['duration'] == round(1000 / 16)
    assert [int(f.mean()) for f in decoded] == pytest.approx([20 * i for i in range(9)], abs=3)
    data, ms = preview.render(latents)
    assert Image.open(io.BytesIO(data)).size == (128, 96) and ms > 0


def test_the_clean_estimate_is_decoded_not_the_noisy_latent():
    latents, x0 = torch.randn(1, 16, 2, 4, 4), torch.randn(1, 16, 2, 4, 4)
    pipe = SimpleNamespace(scheduler=SimpleNamespace(model_outputs=[None, torch.zeros(1), x0][:-1] + [x0]))
    assert x0_of(pipe, latents) is x0
    assert x0_of(SimpleNamespace(scheduler=SimpleNamespace(model_outputs=[None, None])), latents) is latents
    assert x0_of(SimpleNamespace(scheduler=SimpleNamespace()), latents) is latents


def embedded_job(run, model_dir, taehv=None, steps=3):
    run.mkdir(parents=True)
    spec = {'variant': 'wan2.1-t2v-1.3b', 'model': {'ckpt_path': str(model_dir)}, 'backend': 'embedded',
            'loras': [None], 'inputs': [{'prompt': 'a fox', 'image': None, 'image_path': None, 'width': 64,
                                         'height': 48}],
            'strengths': [1.0], 'seed': 3, 'steps': steps, 'guidance': 5.0, 'guidance_low': None, 'shift': 5.0,
            'frames': 5, 'fps': 16, 'negative_prompt': '', 'width': 64, 'height': 48, 'area': None, 'cells': 1,
            'preview_taehv': str(taehv) if taehv else None}
    (run / 'job.json').write_text(json.dumps({'id': run.name, 'task_id': 'fox', 'infer': spec}))
    return run


def test_an_embedded_render_streams_one_preview_per_step(tiny_models, tmp_path):
    taehv = write_tiny_taehv(tmp_path / 'models')['tiny-taew2_1']
    run = embedded_job(tmp_path / 'run', tiny_models / 'wan2.1-t2v-1.3b' / 'official', taehv)
    assert infer.main(['--run_dir', str(run)]) == 0
    previews = [e for e in events(run) if e['type'] == 'preview']
    assert [(e['cell'], e['step'], e['path']) for e in previews] == [
        ('c000', s, f'previews/c000_s{s:03d}.webp') for s in (1, 2, 3)]
    assert all(isinstance(e['ms'], float) and e['ms'] > 0 for e in previews)
    assert sorted(p.name for p in (run / 'previews').iterdir()) == ['c000_s003.webp']   # the newest only
    cell = json.loads((run / 'results.json').read_text())['cells'][0]
    assert (cell['status'], cell['preview'], cell['preview_step']) == ('done', 'previews/c000_s003.webp', 3)
    image, frames = webp_frames((run / cell['preview']).read_bytes())
    assert image.size == (64, 48) and len(frames) in range(1, 6)     # identical frames are merged by the encoder
    frames, rate, codec = read_video(run / cell['video_fast'])              # the TAEHV video of the final latents
    assert cell['video_fast'] == 'results/c000_fast.mp4' and frames.shape == (5, 48, 64, 3) and codec == 'h264'
    assert (run / cell['video_fast']).stat().st_mtime <= (run / cell['video']).stat().st_mtime
    # each preview comes before the step's progress is done: the first preview precedes the cell's video
    kinds = [e['type'] if e['type'] != 'artifact' else e['kind'] for e in events(run)]
    assert kinds.index('preview') < kinds.index('video')

    plain = embedded_job(tmp_path / 'plain', tiny_models / 'wan2.1-t2v-1.3b' / 'official', steps=1)
    assert infer.main(['--run_dir', str(plain)]) == 0
    assert not [e for e in events(plain) if e['type'] == 'preview'] and not (plain / 'previews').exists()
    assert json.loads((plain / 'results.json').read_text())['cells'][0]['video_fast'] is None


def test_the_catalog_finds_taehv_files_and_a_task_picks_a_matching_one(make_app, tiny_model, data_root, tmp_path):
    paths = write_tiny_taehv(data_root / 'models' / 'tiny')
    (data_root / 'models' / 'tiny' / 'taehv' / 'notes.pth').write_bytes(b'not a state dict')
    torch.save({'weight': torch.zeros(2)}, data_root / 'models' / 'other.pth')
    app = make_app()
    studio, c = app.extensions['odeo'], app.test_client()
    listed = c.get(f'{API}/models').get_json()['taehv']
    assert sorted((t['name'], t['latent_channels'], t['patch_size'], t['vae']) for t in listed) == [
        ('tiny/taehv/tiny-taew2_1.pth', 16, 1, 'wan2.1'), ('tiny/taehv/tiny-taew2_2.pth', 48, 2, 'wan2.2')]
    tid = c.post(f'{API}/tasks', json={'form': {'model_path': str(tiny_model)}}).get_json()['id']
    wrong = c.patch(f'{API}/tasks/{tid}/inference', json={'preview': {'taehv': str(paths['tiny-taew2_2'])}})
    assert wrong.status_code == 422 and wrong.get_json()['error']['field'] == 'preview.taehv'
    assert '48-channel' in wrong.get_json()['error']['message']
    outside = tmp_path / 'elsewhere.pth'
    outside.write_bytes(paths['tiny-taew2_1'].read_bytes())
    assert c.patch(f'{API}/tasks/{tid}/inference', json={'preview': {'taehv': str(outside)}}).status_code == 422
    assert c.patch(f'{API}/tasks/{tid}/inference', json={'preview': {'taehv': 3}}).status_code == 400
    ok = c.patch(f'{API}/tasks/{tid}/inference', json={'preview': {'taehv': 'models/tiny/taehv/tiny-taew2_1.pth'}})
    assert ok.status_code == 200 and ok.get_json()['preview']['taehv'] == str(paths['tiny-taew2_1'].resolve())
    spec, _ = studio.inference.prepare(tid, {'base': True, 'prompts': ['a fox'], 'frames': 5})
    assert spec['preview_taehv'] == str(paths['tiny-taew2_1'].resolve())
    c.patch(f'{API}/tasks/{tid}/inference', json={'preview': {'taehv': None}})
    assert studio.inference.prepare(tid, {'base': True, 'prompts': ['a fox'], 'frames': 5})[0]['preview_taehv'] is None


def test_the_newest_preview_of_a_cell_is_served(make_app, tiny_model, data_root):
    app = make_app()
    studio, c = app.extensions['odeo'], app.test_client()
    tid = c.post(f'{API}/tasks', json={'form': {'model_path': str(tiny_model)}}).get_json()['id']
    spec, request = studio.inference.prepare(tid, {'base': True, 'prompts': ['a fox'], 'frames': 5})
    job = studio.inference.queue(tid, spec, request, {'action': 'infer', 'job_id': None, 'checkpoint': None})
    folder = data_root / job['run_dir'] / 'previews'
    assert c.get(f'{API}/jobs/{job["id"]}/previews/c000').status_code == 404          # none yet
    folder.mkdir(parents=True)
    (folder / 'c000_s009.webp').write_bytes(b'older')
    (folder / 'c000_s010.webp').write_bytes(b'newest')
    (folder / 'c001_s011.jpg').write_bytes(b'another cell')
    r = c.get(f'{API}/jobs/{job["id"]}/previews/c000?step=9')
    assert r.status_code == 200 and r.data == b'newest' and r.mimetype == 'image/webp'
    assert r.headers['Cache-Control'] == 'no-store'
    assert c.get(f'{API}/jobs/{job["id"]}/previews/c001').mimetype == 'image/jpeg'
    assert c.get(f'{API}/jobs/{job["id"]}/previews/..%2Fjob.json').status_code == 404


def test_a_failing_preview_never_fails_the_render(tiny_models, tmp_path, monkeypatch):
    def broken(self, latents, fps=16):
        raise RuntimeError('out of memory')
    monkeypatch.setattr(LivePreview, 'render', broken)
    taehv = write_tiny_taehv(tmp_path / 'models')['tiny-taew2_1']
    run = embedded_job(tmp_path / 'run', tiny_models / 'wan2.1-t2v-1.3b' / 'official', taehv, steps=2)
    assert infer.main(['--run_dir', str(run)]) == 0
    cell = json.loads((run / 'results.json').read_text())['cells'][0]
    assert cell['status'] == 'done' and cell['preview'] is None and cell['video_fast'] is None
    assert not [e for e in events(run) if e['type'] == 'preview']
