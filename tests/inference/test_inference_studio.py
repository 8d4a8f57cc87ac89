"""The Inference studio through its REST API: the test-image gallery (uploads checked by content, sizes
read and generation sizes proposed), a task's test settings and best epoch, test runs queued as infer
jobs that make every cell (and stop when asked), and previews queued once per saved epoch."""

import io
import json
import time

import numpy as np
import pytest
from PIL import Image

from tests.support.studio import train_form, wait_until, write_dataset
from tests.support.inference import read_video, saved_training_run
from tests.support.trainer import events

API = '/api/v1'


def png(w, h, colour=(200, 80, 40), fmt='PNG'):
    buf = io.BytesIO()
    Image.new('RGB', (w, h), colour).save(buf, format=fmt)
    return buf.getvalue()


def upload(c, folder, *files):
    data = {'files': [(io.BytesIO(content), name) for name, content in files]}
    return c.post(f'{API}/gallery/{folder}/images', data=data, content_type='multipart/form-data')


def test_gallery_folders_uploads_and_proposed_sizes(make_app):
    c = make_app().test_client()
    assert c.post(f'{API}/gallery', json={'name': 'portraits'}).status_code == 201
    assert c.post(f'{API}/gallery', json={'name': 'portraits'}).status_code == 409
    bad = c.post(f'{API}/gallery', json={'name': '../elsewhere'})
    assert bad.status_code == 400 and bad.get_json()['error']['field'] == 'name'

    r = upload(c, 'portraits', ('wide.png', png(1920, 1080)), ('tall.jpg', png(800, 1200, fmt='JPEG')),
               ('notes.png', b'these are my notes, not an image'))
    assert r.status_code == 201, r.get_json()
    body = r.get_json()
    assert [a['name'] for a in body['added']] == ['wide.png', 'tall.jpg']
    assert body['rejected'][0]['file'] == 'notes.png' and 'not an image' in body['rejected'][0]['message']
    again = upload(c, 'portraits', ('wide.png', png(640, 360, (1, 2, 3))))
    assert again.get_json()['added'][0]['name'] == 'wide (1).png'          # the first one is kept
    only_bad = upload(c, 'portraits', ('broken.png', png(64, 64)[:40]))
    assert only_bad.status_code == 400 and 'broken.png' in only_bad.get_json()['error']['message']

    listing = c.get(f'{API}/gallery/portraits?variant=wan2.1-t2v-14b').get_json()['images']
    sizes = {i['name']: (i['width'], i['height'], i['proposed']) for i in listing}
    assert set(sizes) == {'wide.png', 'wide (1).png', 'tall.jpg'}
    assert sizes['wide.png'] == (1920, 1080, {'480p': [848, 480], '720p': [1280, 720]})
    assert sizes['tall.jpg'][2]['480p'] == [512, 768]
    five = c.get(f'{API}/gallery/portraits?variant=wan2.2-ti2v-5b').get_json()['images']
    assert next(i for i in five if i['name'] == 'wide.png')['proposed'] == {'720p': [1280, 704]}
    assert c.get(f'{API}/gallery/portraits?variant=sd15').status_code == 400

    assert c.get(f'{API}/gallery/portraits/images/wide.png').data == png(1920, 1080)
    assert c.get(f'{API}/gallery/portraits/images/..%2F..%2Fqueue.json').status_code in (400, 404)
    assert c.patch(f'{API}/gallery/portraits', json={'name': 'faces'}).status_code == 200
    assert c.get(f'{API}/gallery/portraits').status_code == 404
    assert c.patch(f'{API}/gallery/faces/images/tall.jpg', json={'name': 'tall-2.jpg'}).get_json()['name'] == 'tall-2.jpg'
    assert c.delete(f'{API}/gallery/faces/images/wide (1).png').status_code == 200
    assert [f['images'] for f in c.get(f'{API}/gallery').get_json()['folders']] == [2]
    assert c.delete(f'{API}/gallery/faces').status_code == 400              # confirm=true needed
    assert c.delete(f'{API}/gallery/faces?confirm=true').get_json()['deleted'] is True
    assert c.get(f'{API}/gallery').get_json()['folders'] == []


def test_test_settings_and_the_best_epoch_live_with_the_task(make_app, tiny_model):
    app = make_app()
    studio, c = app.extensions['odeo'], app.test_client()
    task = c.post(f'{API}/tasks', json={'form': {'model_path': str(tiny_model)}}).get_json()
    tid = task['id']
    train = saved_training_run(studio, tid, tiny_model, epochs=2)
    r = c.patch(f'{API}/tasks/{tid}/inference', json={'prompts': [' a fox ', '', 'a hare']})
    assert r.status_code == 200 and r.get_json()['prompts'] == ['a fox', 'a hare']
    assert c.patch(f'{API}/tasks/{tid}/inference', json={'colour': 'red'}).status_code == 400
    missing = c.patch(f'{API}/tasks/{tid}/inference', json={'images': ['nowhere/x.png']})
    assert missing.status_code == 404 and missing.get_json()['error']['field'] == 'images'
    nope = c.patch(f'{API}/tasks/{tid}/inference', json={'best': {'job_id': train['id'], 'name': 'epoch9'}})
    assert nope.status_code == 404
    best = c.patch(f'{API}/tasks/{tid}/inference', json={'best': {'job_id': train['id'], 'name': 'epoch2'}}).get_json()
    assert (best['best']['lora'], best['best']['epoch'], best['best']['step']) == ('epoch2', 2, 8)
    assert c.get(f'{API}/tasks/{tid}').get_json()['best_lora']['lora'] == 'epoch2'        # for the Training UI
    assert c.get(f'{API}/tasks').get_json()['tasks'][0]['best_lora']['job_id'] == train['id']
    loras = c.get(f'{API}/tasks/{tid}/loras').get_json()['loras']
    assert [(lo['name'], lo['epoch'], lo['best'], lo['variant']) for lo in loras] == [
        ('epoch1', 1, False, 'wan2.1-t2v-1.3b'), ('epoch2', 2, True, 'wan2.1-t2v-1.3b')]
    on = c.patch(f'{API}/tasks/{tid}/inference', json={'preview': {'enabled': True, 'frames': 10}})
    assert on.status_code == 400 and on.get_json()['error']['field'] == 'frames'
    on = c.patch(f'{API}/tasks/{tid}/inference', json={'preview': {'enabled': True, 'frames': 9}}).get_json()
    assert on['preview']['enabled'] and on['preview']['enabled_at'] and on['defaults']['frames'] == 9

    restarted = make_app().test_client()                                      # kept in runs/<task>/inference.json
    again = restarted.get(f'{API}/tasks/{tid}/inference').get_json()
    assert again['prompts'] == ['a fox', 'a hare'] and again['best']['lora'] == 'epoch2' and again['revision'] == 3


@pytest.mark.parametrize('change, status, field', [
    ({'frames': 10}, 400, 'frames'),
    ({'width': 70, 'height': 48}, 400, 'width'),
    ({'width': 64}, 400, 'height'),
    ({'images': ['x/y.png']}, 422, 'images'),
    ({'strengths': [9]}, 400, 'strengths'),
    ({'loras': ['j1-nothing/epoch1']}, 404, 'job_id'),
    ({'base': False, 'loras': []}, 422, 'loras'),
    ({'prompts': []}, 422, 'prompts'),
    ({'backend': 'a1111'}, 400, 'backend'),
    ({'steps': 0}, 400, 'steps'),
])
def test_a_test_run_refuses_bad_settings_naming_the_field(make_app, tiny_model, change, status, field):
    app = make_app()
    c = app.test_client()
    tid = c.post(f'{API}/tasks', json={'form': {'model_path': str(tiny_model)}}).get_json()['id']
    body = {'base': True, 'prompts': ['a fox'], 'frames': 5, **change}
    r = c.post(f'{API}/tasks/{tid}/infer', json=body)
    assert r.status_code == status, r.get_json()
    assert r.get_json()['error']['field'] == field
    assert app.extensions['odeo'].jobs.all(tid) == []                  # nothing queued


def test_a_test_run_makes_every_cell_then_another_is_stopped(make_app, tiny_model, data_root):
    app = make_app(cpu_slots=1)
    studio, c = app.extensions['odeo'], app.test_client()
    tid = c.post(f'{API}/tasks', json={'form': {'model_path': str(tiny_model)}}).get_json()['id']
    train = saved_training_run(studio, tid, tiny_model, epochs=2)
    run = {'loras': [f'{train["id"]}/epoch1', {'job_id': train['id'], 'name': 'epoch2'}], 'base': True,
           'prompts': ['a fox'], 'strengths': [1.0, 0.5], 'width': 64, 'height': 48, 'frames': 5, 'steps': 3, 'seed': 9}
    job = c.post(f'{API}/tasks/{tid}/infer', json=run).get_json()
    assert job['kind'] == 'infer' and job['infer']['cells'] == 5 and job['state'] == 'queued'
    rec = wait_until(lambda: (j := studio.jobs.get(job['id']))['state'] in ('done', 'failed') and j, 120,
                     studio.scheduler.tick, every=0.3, what='the test run')
    assert rec['state'] == 'done', c.get(f'{API}/jobs/{job["id"]}/log?tail=3000').get_json()['text']
    res = c.get(f'{API}/tasks/{tid}/results').get_json()
    cells = res['cells']
    assert [(x['lora'] and x['lora']['label'], x['strength']) for x in cells] == [
        (None, None), ('epoch 1', 1.0), ('epoch 1', 0.5), ('epoch 2', 1.0), ('epoch 2', 0.5)]
    run_dir = data_root / rec['run_dir']
    first = None
    for cell in cells:
        frames, rate, codec = read_video(run_dir / cell['video'])
        assert frames.shape == (5, 48, 64, 3) and codec == 'h264' and rate == 16
        assert Image.open(run_dir / cell['poster']).size == (64, 48)
        if first is not None:
            assert not np.array_equal(frames, first)
        first = frames
    video = c.get(f'{API}/{cells[0]["video_url"]}', headers={'Range': 'bytes=0-99'})
    assert video.status_code == 206 and len(video.data) == 100
    art = [e for e in events(run_dir) if e['type'] == 'artifact' and e['kind'] == 'video']
    assert [(e['lora'], e['epoch'], e['strength']) for e in art] == [
        ('base model', None, None), ('epoch 1', 1, 1.0), ('epoch 1', 1, 0.5), ('epoch 2', 2, 1.0), ('epoch 2', 2, 0.5)]
    assert all((e['seed'], e['prompt'], e['width'], e['height'], e['frames']) == (9, 'a fox', 64, 48, 5) for e in art)
    progress = c.get(f'{API}/jobs/{job["id"]}/progress').get_json()
    assert progress['phase'] == 'infer' and progress['fraction'] == 1.0 and progress['status'] == 'done'
    assert c.get(f'{API}/tasks/{tid}').get_json()['state'] == 'done'        # the training job's state, not the test's

    slow = c.post(f'{API}/tasks/{tid}/infer', json={'base': True, 'prompts': ['a fox', 'a hare'], 'steps': 200,
                                                     'frames': 5, 'width': 64, 'height': 48}).get_json()
    wait_until(lambda: studio.monitor.progress(studio.jobs.get(slow['id']))['status'] == 'generating', 60,
               studio.scheduler.tick, every=0.3, what='the second run to generate')
    assert c.post(f'{API}/jobs/{slow["id"]}/stop', json={}).status_code == 202
    rec = wait_until(lambda: (j := studio.jobs.get(slow['id']))['state'] in ('stopped', 'failed', 'done') and j, 60,
                     studio.scheduler.tick, every=0.3, what='the stop')
    assert rec['state'] == 'stopped' and rec['attempts'][-1]['exit_code'] == 0
    manifest = json.loads((data_root / rec['run_dir'] / 'results.json').read_text())
    assert [x['status'] for x in manifest['cells']] == ['skipped', 'skipped']


def test_previews_are_queued_once_per_saved_epoch_without_holding_up_the_queue(make_app, data_root, tiny_model):
    # 2 steps an epoch of 1 s: the run is still going for 2 s after its second save, while the test looks
    write_dataset(data_root / 'datasets' / 'fake', behave={'step_time': 1.0})
    app = make_app(cpu_slots=2, comfyui_url='http://127.0.0.1:9')          # previews go to an absent ComfyUI
    studio, c = app.extensions['odeo'], app.test_client()
    tid = c.post(f'{API}/tasks', json={'form': train_form(tiny_model, 'fake', epochs=3)}).get_json()['id']
    other = c.post(f'{API}/tasks', json={'form': train_form(tiny_model, 'fake', epochs=1)}).get_json()['id']
    preview = {'enabled': True, 'device': 'training', 'backend': 'comfyui', 'steps': 2, 'frames': 5, 'width': 64,
               'height': 48}
    assert c.patch(f'{API}/tasks/{tid}/inference', json={'prompts': ['a fox'], 'preview': preview}).status_code == 200
    train = c.post(f'{API}/tasks/{tid}/start', json={}).get_json()

    def previews(s):
        return [j for j in s.jobs.all(tid, kind='infer') if j['origin']['action'] == 'preview']

    wait_until(lambda: len(previews(studio)) >= 2, 60, studio.scheduler.tick, every=0.1, what='previews of 2 epochs')
    assert studio.jobs.get(train['id'])['state'] == 'running'          # they came while training goes on
    waiting = previews(studio)
    devices = studio.jobs.get(train['id'])['attempts'][-1]['devices']
    assert all(p['background'] and p['request']['gpu_ids'] == devices and p['state'] == 'queued' for p in waiting)
    second = c.post(f'{API}/tasks/{other}/start', json={}).get_json()      # queued behind the waiting previews
    wait_until(lambda: studio.jobs.get(second['id'])['state'] != 'queued', 20, studio.scheduler.tick, every=0.1,
               what='the other task to start although previews wait ahead of it')
    assert all(p['state'] == 'queued' for p in previews(studio)[:2])
    wait_until(lambda: studio.jobs.get(train['id'])['state'] == 'done' and len(previews(studio)) == 3, 60,
               studio.scheduler.tick, every=0.1, what='training to end with 3 previews')
    found = sorted((p['origin']['job_id'], p['origin']['checkpoint']) for p in previews(studio))
    assert found == [(train['id'], f'epoch{e}') for e in (1, 2, 3)]
    assert previews(studio)[0]['infer']['loras'][0]['files'][0]['path'].endswith('epoch1/adapter_model.safetensors')

    restarted = make_app(cpu_slots=2, comfyui_url='http://127.0.0.1:9').extensions['odeo']
    for _ in range(5):
        restarted.scheduler.tick()
        time.sleep(0.05)
    assert sorted(p['origin']['checkpoint'] for p in previews(restarted)) == ['epoch1', 'epoch2', 'epoch3']


def test_a_two_expert_save_lists_each_file_with_its_own_expert(tmp_path):
    """Wan2.2 two-expert runs write both experts' files into one epoch folder (LoRAs) or one subfolder each
    (full fine-tunes); each file is listed with its expert, from its artifact event or else its name."""
    from api.services.jobs.runs import list_loras
    run = tmp_path / 'run'
    for rel in ('epoch1/adapter_model_high_noise.safetensors', 'epoch1/adapter_model_low_noise.safetensors',
                'epoch2/high_noise_model/diffusion_pytorch_model.safetensors',
                'epoch2/low_noise_model/diffusion_pytorch_model.safetensors', 'epoch3/adapter_model.safetensors'):
        (run / rel).parent.mkdir(parents=True, exist_ok=True)
        (run / rel).write_bytes(b'x' * 8)
    events = {f'epoch1/adapter_model_{e}.safetensors': {'kind': 'lora', 'expert': e, 'epoch': 1}
              for e in ('high_noise', 'low_noise')}
    for artifacts in (events, None):
        listed = {f['path']: f['expert'] for save in list_loras(run, artifacts) for f in save['files']}
        assert listed == {'epoch1/adapter_model_high_noise.safetensors': 'high_noise',
                          'epoch1/adapter_model_low_noise.safetensors': 'low_noise',
                          'epoch2/high_noise_model/diffusion_pytorch_model.safetensors': 'high_noise',
                          'epoch2/low_noise_model/diffusion_pytorch_model.safetensors': 'low_noise',
                          'epoch3/adapter_model.safetensors': None}
