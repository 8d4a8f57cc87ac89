"""Batch evaluation (`eval` jobs) through the REST API: a CSV of rows made with two LoRAs on two CPU slots, one
worker process each, every cell made exactly once and gathered into one results.json in the infer format."""

import json
from collections import Counter

from tests.support.inference import read_video, saved_training_run
from tests.support.studio import wait_until
from tests.support.trainer import events

API = '/api/v1'
CSV = 'prompt\na red fox\n"a hare, running"\na grey owl\na badger at dusk\na deer in fog\n'


def test_a_batch_over_two_cpu_slots_makes_every_row_exactly_once(make_app, tiny_model, data_root):
    app = make_app(cpu_slots=2)
    studio, c = app.extensions['odeo'], app.test_client()
    tid = c.post(f'{API}/tasks', json={'form': {'model_path': str(tiny_model)}}).get_json()['id']
    train = saved_training_run(studio, tid, tiny_model, epochs=2)
    bad = c.post(f'{API}/tasks/{tid}/evaluations', json={'loras': [f'{train["id"]}/epoch1'], 'csv': 'prompt\n'})
    assert bad.status_code == 422 and bad.get_json()['error']['field'] == 'csv'
    body = {'loras': [f'{train["id"]}/epoch1', f'{train["id"]}/epoch2'], 'csv': CSV, 'gpus': 2,
            'width': 32, 'height': 32, 'frames': 5, 'steps': 2, 'seed': 3}
    r = c.post(f'{API}/tasks/{tid}/evaluations', json=body)
    assert r.status_code == 202, r.get_json()
    job = r.get_json()
    assert job['kind'] == 'eval' and job['infer']['cells'] == 10 and job['request']['gpus'] == 2
    assert [i['prompt'] for i in job['infer']['inputs']] == ['a red fox', 'a hare, running', 'a grey owl',
                                                             'a badger at dusk', 'a deer in fog']
    rec = wait_until(lambda: (j := studio.jobs.get(job['id']))['state'] in ('done', 'failed') and j, 240,
                     studio.scheduler.tick, every=0.3, what='the batch evaluation')
    run_dir = data_root / rec['run_dir']
    assert rec['state'] == 'done', (run_dir / 'log.txt').read_text() + ''.join(
        p.read_text() for p in run_dir.glob('workers/*/log.txt'))
    assert len(rec['attempts'][-1]['devices']) == 2

    made = Counter()                                    # each worker's own manifest: the cells it made
    for k in (0, 1):
        own = json.loads((run_dir / 'workers' / f'w{k}' / 'results.json').read_text())
        done = [x['id'] for x in own['cells'] if x['status'] == 'done']
        assert done and all(x['index'] % 2 == k for x in own['cells'])
        made.update(done)
    manifest = json.loads((run_dir / 'results.json').read_text())
    ids = [x['id'] for x in manifest['cells']]
    assert len(ids) == 10 and set(made) == set(ids) and all(n == 1 for n in made.values())     # exactly once
    assert manifest['workers'] == 2 and {x['worker'] for x in manifest['cells']} == {0, 1}
    assert all(x['status'] == 'done' and (run_dir / x['video']).is_file() for x in manifest['cells'])
    arts = Counter(e['cell'] for e in events(run_dir) if e['type'] == 'artifact' and e['kind'] == 'video')
    assert set(arts) == set(ids) and set(arts.values()) == {1}
    frames, _, codec = read_video(run_dir / manifest['cells'][0]['video'])
    assert frames.shape == (5, 32, 32, 3) and codec == 'h264'

    res = c.get(f'{API}/tasks/{tid}/results').get_json()              # the comparison grid shows them
    assert [j['kind'] for j in res['jobs']] == ['eval'] and res['jobs'][0]['done'] == 10
    assert sorted((x['lora']['label'], x['prompt']) for x in res['cells'])[:2] == [
        ('epoch 1', 'a badger at dusk'), ('epoch 1', 'a deer in fog')]
    progress = c.get(f'{API}/jobs/{job["id"]}/progress').get_json()
    assert progress['status'] == 'done' and progress['fraction'] == 1.0
