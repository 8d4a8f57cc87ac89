"""Auto-captioning is a `caption` job: a real subprocess started by the scheduler on the CPU, loading a
tiny random-weight Qwen2.5-VL from a folder through transformers. Captions it writes are marked as
machine-written; captions people wrote are never touched unless asked; stop is honoured."""

import json

import pytest

from api.services.data.caption_files import CaptionBook
from tests.support import mediagen
from tests.support.data import API
from tests.support.studio import wait_until
from tests.support.tiny_vlm import write_tiny_qwen25_vl
from tests.support.trainer import events

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def vlm_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('vlm_models')
    write_tiny_qwen25_vl(root / 'tiny-vl')
    return root


@pytest.fixture
def setup(make_app, data_root, vlm_root):
    folder = data_root / 'datasets' / 'd'
    folder.mkdir()
    mediagen.video(folder / 'a.mp4', 64, 48, 16, 20)
    mediagen.video(folder / 'b.mp4', 48, 64, 16, 20)
    mediagen.image(folder / 'c.png', 40, 40)
    mediagen.video(folder / 'd.mp4', 48, 48, 16, 12)
    mediagen.caption(folder / 'b.mp4', 'a person wrote this')
    CaptionBook(folder).write('d.mp4', 'an earlier model wrote this', by='machine', model='old-vl')
    return (lambda **settings: make_app(model_roots=(str(vlm_root),), **settings)), folder, str(vlm_root / 'tiny-vl')


def _run(app, body):
    c, studio = app.test_client(), app.extensions['odeo']
    r = c.post(f'{API}/datasets/d/caption-jobs', json={'max_new_tokens': 6, **body})
    assert r.status_code == 202, r.get_json()
    job_id = r.get_json()['id']
    wait_until(lambda: studio.jobs.get(job_id)['state'] not in ('queued', 'running', 'stopping'), 120,
               studio.scheduler.tick, what='the caption job')
    return studio.jobs.get(job_id), studio.paths.root / studio.jobs.get(job_id)['run_dir']


def test_captions_only_what_it_may_and_marks_its_work(setup):
    make, folder, model = setup
    app = make()
    c = app.test_client()
    assert c.get(f'{API}/captioning').get_json()['models'] == [{'name': 'tiny-vl', 'path': model, 'model_type': 'qwen2_5_vl'}]
    human = (folder / 'b.txt').read_bytes()
    job, run = _run(app, {'model_path': model})
    assert job['state'] == 'done' and job['kind'] == 'caption' and job['task_id'] == 'captions', job['message']
    assert job['attempts'][-1]['command'][1:3] == ['-m', 'api.jobs.caption']
    files = {f['name']: f for f in c.get(f'{API}/datasets/d/files').get_json()['files']}
    for name in ('a.mp4', 'c.png'):
        assert files[name]['caption_origin'] == 'machine' and files[name]['caption_model'] == 'tiny-vl'
        assert files[name]['caption'] and (folder / name).with_suffix('.txt').is_file()
    assert (folder / 'b.txt').read_bytes() == human and files['b.mp4']['caption_origin'] == 'human'
    assert files['d.mp4']['caption'] == 'an earlier model wrote this'              # overwrite: none
    run_events = events(run)
    states = [e['state'] for e in run_events if e['type'] == 'status']
    assert states == ['starting', 'captioning', 'done']
    progress = [e for e in run_events if e['type'] == 'progress']
    assert [p['step'] for p in progress] == [1, 2, 3, 4] and progress[-1]['total_steps'] == 4
    assert (progress[-1]['written'], progress[-1]['skipped'], progress[-1]['failed']) == (2, 2, 0)
    results = json.loads((run / 'captions.json').read_text())
    assert {r['file']: r['result'] for r in results['files']} == {'a.mp4': 'written', 'b.mp4': 'skipped',
                                                                 'c.png': 'written', 'd.mp4': 'skipped'}
    listed = c.get(f'{API}/datasets/d/caption-jobs').get_json()['jobs']
    assert listed[0]['id'] == job['id'] and listed[0]['progress']['written'] == 2 and listed[0]['caption']['files'] == 4
    assert c.get(f'{API}/jobs/{job["id"]}/progress').get_json()['phase'] == 'caption'

    # a person edits one of the machine captions: from then on it is theirs
    c.put(f'{API}/datasets/d/captions/a.mp4', json={'text': 'corrected by hand'})
    job, run = _run(app, {'model_path': model, 'overwrite': 'machine'})
    files = {f['name']: f for f in c.get(f'{API}/datasets/d/files').get_json()['files']}
    assert files['a.mp4']['caption'] == 'corrected by hand' and files['a.mp4']['caption_origin'] == 'human'
    assert (folder / 'b.txt').read_bytes() == human
    assert files['d.mp4']['caption_origin'] == 'machine' and files['d.mp4']['caption_model'] == 'tiny-vl'
    assert files['c.png']['caption_origin'] == 'machine'

    # only when asked, and only for the files named
    job, run = _run(app, {'model_path': model, 'overwrite': 'all', 'files': ['b.mp4']})
    assert json.loads((run / 'captions.json').read_text())['counts'] == {'written': 1, 'skipped': 0, 'failed': 0}
    assert (folder / 'b.txt').read_bytes() != human
    assert (folder / 'a.txt').read_text().strip() == 'corrected by hand'


def test_stop_is_honoured_and_refusals_are_clear(setup, vlm_root, tmp_path):
    make, folder, model = setup
    app = make(stop_grace_s=120.0)              # the job acts on control/stop itself, however slow it loads
    c, studio = app.test_client(), app.extensions['odeo']
    r = c.post(f'{API}/datasets/d/caption-jobs', json={'model_path': model})
    job_id = r.get_json()['id']
    assert c.post(f'{API}/datasets/d/caption-jobs', json={'model_path': model}).status_code == 409   # one at a time
    assert c.patch(f'{API}/datasets/d', json={'name': 'e'}).status_code == 409
    wait_until(lambda: studio.jobs.get(job_id)['state'] == 'running', 20, studio.scheduler.tick, what='the start')
    assert c.post(f'{API}/jobs/{job_id}/stop', json={}).status_code == 202
    wait_until(lambda: studio.jobs.get(job_id)['state'] == 'stopped', 60, studio.scheduler.tick, what='the stop')
    run = studio.paths.root / studio.jobs.get(job_id)['run_dir']
    assert [e['state'] for e in events(run) if e['type'] == 'status'][-1] == 'stopped'
    assert not (folder / 'a.txt').exists()

    outside = tmp_path / 'elsewhere'
    write_dummy = outside / 'model'
    write_dummy.mkdir(parents=True)
    (write_dummy / 'config.json').write_text('{"model_type": "qwen2_5_vl"}')
    r = c.post(f'{API}/datasets/d/caption-jobs', json={'model_path': str(write_dummy)})
    assert r.status_code == 400 and r.get_json()['error']['code'] == 'path_refused'
    wrong = vlm_root / 'not-a-vlm'
    wrong.mkdir(exist_ok=True)
    (wrong / 'config.json').write_text('{"model_type": "bert"}')
    r = c.post(f'{API}/datasets/d/caption-jobs', json={'model_path': str(wrong)})
    assert r.status_code == 422 and "'bert'" in r.get_json()['error']['message']
    r = c.post(f'{API}/datasets/d/caption-jobs', json={'model_path': model, 'overwrite': 'everything'})
    assert r.get_json()['error']['field'] == 'overwrite'
    r = c.post(f'{API}/datasets/d/caption-jobs', json={'model_path': model, 'files': ['../x.mp4']})
    assert r.status_code == 400 and r.get_json()['error']['field'] == 'files'


def test_florence2_captions_through_the_same_loader(tmp_path):
    """The other model family of the registry, loaded from its folder as the job loads it (in-process)."""
    import torch
    from PIL import Image

    from api.jobs.captioners import FlorenceCaptioner, check_folder, load_captioner
    from tests.support.tiny_vlm import write_tiny_florence2
    folder = write_tiny_florence2(tmp_path / 'tiny-florence')
    assert check_folder(folder) == 'florence2'
    cap = load_captioner(folder, 'cpu', torch.float32)
    assert isinstance(cap, FlorenceCaptioner) and cap.frames_wanted == 1
    frames = [Image.new('RGB', (80, 60), (200, 30, 30)), Image.new('RGB', (80, 60), (30, 200, 30))]
    text = cap.caption(frames, 'ignored: not a task token', max_new_tokens=6)
    assert isinstance(text, str) and text.strip() and '<MORE_DETAILED_CAPTION>' not in text
