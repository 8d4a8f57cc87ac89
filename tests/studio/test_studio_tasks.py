"""Tasks through the REST API: automatic names, drafts from the form and the TOML editor, copy, rename,
delete, validation issues mapped to form fields, and starting (what gets frozen into the run)."""

import json
import time
import tomllib

import pytest

from tests.support.studio import copy_tiny_model, train_form, write_dataset


@pytest.fixture
def client(make_app, data_root, tiny_model):
    write_dataset(data_root / 'datasets' / 'demo')
    return make_app().test_client()


def create(client, **body):
    r = client.post('/api/v1/tasks', json=body)
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def test_names_count_up_per_day_and_defaults_pick_the_model_and_dataset(client, tiny_model):
    day = time.strftime('%Y%m%d')
    a, b = create(client), create(client)
    assert (a['id'], b['id']) == (f'wan-{day}-01', f'wan-{day}-02') and a['name'] == a['id']
    assert a['form']['model_path'] == str(tiny_model) and a['form']['dataset'] == 'demo'
    assert a['model']['variant']['id'] == 'wan2.1-t2v-1.3b' and a['state'] == 'draft'
    named = create(client, name='my style', prefix='wan')
    assert named['name'] == 'my style' and named['id'] == f'wan-{day}-03'
    assert client.post('/api/v1/tasks', json={'name': 'My Style'}).status_code == 409
    assert client.post('/api/v1/tasks', json={'prefix': '../x'}).status_code == 400
    listed = client.get('/api/v1/tasks').get_json()['tasks']
    assert [t['id'] for t in listed] == [a['id'], b['id'], named['id']]


def test_draft_from_the_form_and_from_toml_stay_in_step(client):
    t = create(client)
    r = client.patch(f'/api/v1/tasks/{t["id"]}', json={'form': {'epochs': 7, 'learning_rate': 3e-4, 'lora_rank': 16,
                                                                 'frame_buckets': [1, 17], 'gpus': 2}})
    assert r.status_code == 200
    t = r.get_json()
    main, ds = tomllib.loads(t['toml']['main']), tomllib.loads(t['toml']['dataset'])
    assert main['epochs'] == 7 and main['optimizer']['lr'] == 3e-4 and main['adapter']['rank'] == 16
    assert ds['frame_buckets'] == [1, 17] and t['resources'] == {'gpus': 2, 'gpu_ids': None}
    text = t['toml']['main'].replace('epochs = 7', 'epochs = 12')
    t = client.patch(f'/api/v1/tasks/{t["id"]}', json={'toml': {'main': text}}).get_json()
    assert t['form']['epochs'] == 12 and t['revision'] == 3
    # a half-typed TOML is saved as it is (a draft), the form reports it, form edits wait for a fix
    t = client.patch(f'/api/v1/tasks/{t["id"]}', json={'toml': {'main': text + '\n[broken'}}).get_json()
    assert t['form_errors'] == ['config.toml'] and t['toml']['main'].endswith('[broken')
    r = client.patch(f'/api/v1/tasks/{t["id"]}', json={'form': {'epochs': 3}})
    assert r.status_code == 400 and r.get_json()['error']['field'] == 'toml.main'
    v = client.post(f'/api/v1/tasks/{t["id"]}/validate').get_json()
    assert not v['ok'] and v['issues'][0]['key'] == '(syntax)'
    r = client.patch(f'/api/v1/tasks/{t["id"]}', json={'form': {'nonsense': 1}, 'toml': {'main': text}})
    assert r.status_code == 400 and r.get_json()['error']['field'] == 'nonsense'
    assert client.patch(f'/api/v1/tasks/{t["id"]}', json={'if_revision': 1, 'name': 'x'}).status_code == 409



def test_a_form_edit_keeps_the_comments_and_layout_of_a_hand_written_toml(client):
    """A pasted diffusion-pipe config keeps its notes: a form edit changes only the values it sets, and
    leaves the other file exactly as it was."""
    t = create(client)
    main = t['toml']['main'].replace('[optimizer]', '# tuned on the beach set, see notes\n[optimizer]', 1)
    main = '# style LoRA, second try\n' + main
    dataset = '# clips re-cut on monday\n' + t['toml']['dataset']
    t = client.patch(f'/api/v1/tasks/{t["id"]}', json={'toml': {'main': main, 'dataset': dataset}}).get_json()
    t = client.patch(f'/api/v1/tasks/{t["id"]}', json={'form': {'epochs': 42, 'lora_rank': 64}}).get_json()
    after = t['toml']['main']
    assert after.startswith('# style LoRA, second try\n')
    assert '# tuned on the beach set, see notes\n[optimizer]' in after
    assert tomllib.loads(after)['epochs'] == 42 and tomllib.loads(after)['adapter']['rank'] == 64
    assert t['toml']['dataset'] == dataset                     # untouched by this edit
    changed = [(a, b) for a, b in zip(main.splitlines(), after.splitlines()) if a != b]
    assert len(main.splitlines()) == len(after.splitlines()) and len(changed) == 2, changed
    noted = after.replace('lr = 2e-5', 'lr = 2e-5   # halved after epoch 8', 1)
    client.patch(f'/api/v1/tasks/{t["id"]}', json={'toml': {'main': noted}})
    t = client.patch(f'/api/v1/tasks/{t["id"]}', json={'form': {'learning_rate': 2e-5}}).get_json()
    assert '# halved' in noted and t['toml']['main'] == noted    # the same value: the line stays as written

def test_copy_and_rename(client):
    t = create(client)
    client.patch(f'/api/v1/tasks/{t["id"]}', json={'form': {'epochs': 9}})
    r = client.post(f'/api/v1/tasks/{t["id"]}/copy', json={'name': 'second try'})
    assert r.status_code == 201
    c = r.get_json()
    assert c['id'] != t['id'] and c['name'] == 'second try' and c['form']['epochs'] == 9 and c['copied_from'] == t['id']
    r = client.patch(f'/api/v1/tasks/{t["id"]}', json={'name': 'first try'})
    assert r.get_json()['name'] == 'first try' and r.get_json()['id'] == t['id']
    assert client.patch(f'/api/v1/tasks/{t["id"]}', json={'name': 'Second Try'}).status_code == 409
    assert client.patch(f'/api/v1/tasks/{t["id"]}', json={'name': 'bad\nname'}).status_code == 400


def test_delete_needs_confirmation(client, data_root):
    t = create(client)
    r = client.delete(f'/api/v1/tasks/{t["id"]}')
    assert r.status_code == 400 and r.get_json()['error']['field'] == 'confirm'
    r = client.delete(f'/api/v1/tasks/{t["id"]}?confirm=true')
    assert r.status_code == 200 and r.get_json()['deleted']
    assert client.get(f'/api/v1/tasks/{t["id"]}').status_code == 404
    assert not (data_root / 'runs' / t['id']).exists()


def test_validation_issues_are_mapped_to_form_fields(client):
    t = create(client)
    client.patch(f'/api/v1/tasks/{t["id"]}', json={'form': {
        'learning_rate': -1, 'epochs': 'ten', 'resolutions': [500], 'frame_buckets': [1, 30],
        'pipeline_stages': 3, 'gpus': 2, 'optimizer': 'adamw'}})
    r = client.post(f'/api/v1/tasks/{t["id"]}/validate')
    issues = {i['field']: i for i in r.get_json()['issues']}
    assert issues['learning_rate']['key'] == 'optimizer.lr' and issues['learning_rate']['value'] == -1
    assert issues['epochs']['message'] == 'must be an integer' and issues['epochs']['file'] == 'config.toml'
    assert 'multiple of 16' in issues['resolutions']['message'] and issues['resolutions']['file'] == 'dataset.toml'
    assert '4n+1' in issues['frame_buckets']['message']
    assert 'larger than the 2 process' in issues['pipeline_stages']['message']
    r = client.post(f'/api/v1/tasks/{t["id"]}/start', json={})
    assert r.status_code == 422
    err = r.get_json()['error']
    assert err['code'] == 'invalid' and {i['field'] for i in err['issues']} >= {'learning_rate', 'epochs'}


def test_start_freezes_the_config_into_the_run_directory(client, data_root, tiny_model):
    t = create(client, form=train_form(tiny_model, 'demo', epochs=4))
    r = client.post(f'/api/v1/tasks/{t["id"]}/start', json={})
    assert r.status_code == 202
    job = r.get_json()
    assert job['state'] == 'queued' and job['queue_position'] == 0
    run = data_root / job['run_dir']
    assert run.parent == data_root / 'runs' / t['id']
    main = tomllib.loads((run / 'config.toml').read_text())
    ds = tomllib.loads((run / 'dataset.toml').read_text())
    assert main['output_dir'] == str(run.parent) and main['dataset'] == str(run / 'dataset.toml')
    assert main['epochs'] == 4 and main['model']['ckpt_path'] == str(tiny_model)
    assert ds['directory'][0]['path'] == str(data_root / 'datasets' / 'demo')
    # later edits of the draft do not touch the frozen copy
    client.patch(f'/api/v1/tasks/{t["id"]}', json={'form': {'epochs': 99}})
    assert tomllib.loads((run / 'config.toml').read_text())['epochs'] == 4
    assert client.get(f'/api/v1/tasks/{t["id"]}/jobs').get_json()['jobs'][0]['id'] == job['id']


def test_paths_outside_the_data_root_are_refused_with_field_errors(client, tiny_model, tmp_path):
    t = create(client, form=train_form(tiny_model, 'demo'))
    main = t['toml']['main']
    outside = str(tmp_path / 'elsewhere')
    client.patch(f'/api/v1/tasks/{t["id"]}', json={'toml': {'main': f'output_dir = "{outside}"\n'
                                                                      f'dataset = "/etc/passwd"\n' + main}})
    r = client.post(f'/api/v1/tasks/{t["id"]}/start', json={})
    assert r.status_code == 422
    keys = {i['key']: i for i in r.get_json()['error']['issues']}
    assert 'outside the data root' in keys['output_dir']['message'] and keys['output_dir']['value'] == outside
    assert 'outside the data root' in keys['dataset']['message']
    assert not (tmp_path / 'elsewhere').exists()
    ds = t['toml']['dataset'].replace(f'path = "{t["form"]["dataset"]}"', 'path = "/etc"')
    ds = '\n'.join(line if not line.startswith('path =') else 'path = "../../../etc"' for line in ds.splitlines())
    client.patch(f'/api/v1/tasks/{t["id"]}', json={'toml': {'main': main, 'dataset': ds}})
    issues = client.post(f'/api/v1/tasks/{t["id"]}/validate').get_json()['issues']
    assert [(i['field'], 'outside the datasets folder' in i['message']) for i in issues] == [('dataset', True)]
    r = client.patch(f'/api/v1/tasks/{t["id"]}', json={'form': {'dataset': '../../etc'}})
    assert r.status_code == 400 and r.get_json()['error']['field'] == 'dataset'
    r = client.patch(f'/api/v1/tasks/{t["id"]}', json={'form': {'model_path': '/etc'}})
    assert r.status_code == 400 and r.get_json()['error']['field'] == 'model_path'


def _start_issues(client, t, main=None, dataset=None):
    toml = {'main': main or t['toml']['main'], 'dataset': dataset or t['toml']['dataset']}
    assert client.patch(f'/api/v1/tasks/{t["id"]}', json={'toml': toml}).status_code == 200
    r = client.post(f'/api/v1/tasks/{t["id"]}/start', json={})
    assert r.status_code == 422, r.get_json()
    return r.get_json()['error']['issues']


def test_eval_datasets_and_metadata_rows_cannot_lead_outside(client, data_root, tiny_model, tmp_path):
    # a caption .txt (which anyone with the studio can write) doubles as an eval dataset TOML or a metadata
    # table; what it names must stay in the datasets folder, or the trainer would cache and list it
    private = tmp_path / 'private'
    write_dataset(private, items=1)
    demo = data_root / 'datasets' / 'demo'
    (demo / 'img0.txt').write_text(f'[[directory]]\npath = "{private}"\n')
    t = create(client, form=train_form(tiny_model, 'demo'))
    main = t['toml']['main'] + '\n'.join(['', '[[eval_datasets]]', 'name = "e"', f'config = "{demo / "img0.txt"}"', ''])
    issues = _start_issues(client, t, main=main)
    assert [i['key'] for i in issues] == ['eval_datasets[0].config']
    assert 'img0.txt: directory.path' in issues[0]['message'] and str(private) in issues[0]['message']
    # the eval file's folder is fine, but a metadata row of it names a private file
    (demo / 'img0.txt').write_text('[[directory]]\npath = "."\nmetadata_file = "img1.txt"\n')
    (demo / 'img1.txt').write_text(json.dumps([{'image': str(private / 'img0.png'), 'prompt': 'stolen'}]))  # read as JSON
    issues = _start_issues(client, t, main=main)
    assert [i['key'] for i in issues] == ['eval_datasets[0].config']
    assert 'img1.txt entry 1' in issues[0]['message'] and str(private / 'img0.png') in issues[0]['message']
    # the main dataset: a metadata row, and a symlink in the folder
    (demo / 'img0.txt').write_text('a test image')
    (demo / 'metadata.csv').write_text(f'image,prompt\n{private / "img0.png"},stolen\n')
    issues = _start_issues(client, t)
    assert [i['field'] for i in issues] == ['dataset']
    assert 'metadata.csv row 2' in issues[0]['message'] and 'outside the datasets folder' in issues[0]['message']
    (demo / 'metadata.csv').unlink()
    (demo / 'link.png').symlink_to(private / 'img0.png')
    issues = _start_issues(client, t)
    assert 'demo/link.png' in issues[0]['message'] and str(private / 'img0.png') in issues[0]['message']
    assert not list((data_root / 'runs' / t['id']).glob('j*'))       # nothing was frozen or queued


def test_a_checked_eval_dataset_is_frozen_into_the_run(client, data_root, tiny_model):
    demo = data_root / 'datasets' / 'demo'
    (data_root / 'datasets' / 'eval.toml').write_text('[[directory]]\npath = "demo"\n')
    t = create(client, form=train_form(tiny_model, 'demo'))
    main = t['toml']['main'] + '\n[[eval_datasets]]\nname = "e"\nconfig = "datasets/eval.toml"\n'
    client.patch(f'/api/v1/tasks/{t["id"]}', json={'toml': {'main': main, 'dataset': t['toml']['dataset']}})
    r = client.post(f'/api/v1/tasks/{t["id"]}/start', json={})
    assert r.status_code == 202, r.get_json()
    run = data_root / r.get_json()['run_dir']
    cfg = tomllib.loads((run / 'config.toml').read_text())
    assert cfg['eval_datasets'] == [{'name': 'e', 'config': str(run / 'eval_dataset0.toml')}]
    assert tomllib.loads((run / 'eval_dataset0.toml').read_text())['directory'][0]['path'] == str(demo)


def test_models_and_datasets_are_listed(client, tiny_model, tiny_models, data_root):
    copy_tiny_model(tiny_models, data_root / 'models' / 'group' / 'ti2v', 'wan2.2-ti2v-5b', 'diffusers')
    copy_tiny_model(tiny_models, data_root / 'models' / 'wan22' / 'a14b', 'wan2.2-t2v-a14b', 'official')
    (data_root / 'models' / 'not-a-model').mkdir()
    broken = data_root / 'models' / 'broken'
    broken.mkdir()
    (broken / 'config.json').write_text('{"dim": 5120}')
    (broken / 'Wan2.1_VAE.pth').write_bytes(b'')
    models = {m['name']: m for m in client.get('/api/v1/models').get_json()['models']}
    assert set(models) == {'tiny', 'group/ti2v', 'wan22/a14b', 'broken'}
    assert models['tiny']['layout'] == 'wan' and models['tiny']['variant']['size_multiple'] == 16
    v = models['group/ti2v']['variant']
    assert models['group/ti2v']['layout'] == 'diffusers' and v['id'] == 'wan2.2-ti2v-5b' and v['size_multiple'] == 32
    assert models['wan22/a14b']['variant']['experts'] == ['high_noise', 'low_noise']
    assert models['broken']['variant'] is None and models['broken']['error']
    # a model the inspector refuses is refused as the task's model, with its reason
    t = create(client, form={'model_path': str(broken)})
    issues = client.post(f'/api/v1/tasks/{t["id"]}/validate').get_json()['issues']
    assert any(i['field'] == 'model_path' and i['message'] == models['broken']['error'] for i in issues)
    # the ti2v model needs sides that are multiples of 32
    client.patch(f'/api/v1/tasks/{t["id"]}', json={'form': {'model_path': models['group/ti2v']['path'],
                                                             'resolutions': [496]}})
    issues = client.post(f'/api/v1/tasks/{t["id"]}/validate').get_json()['issues']
    assert any(i['field'] == 'resolutions' and 'multiple of 32' in i['message'] for i in issues)
    ds = client.get('/api/v1/datasets').get_json()['datasets']
    assert ds == [{'name': 'demo', 'path': str(data_root / 'datasets' / 'demo'), 'images': 2, 'videos': 0,
                   'captions': 2}]
    assert client.get('/api/v1/datasets/demo').get_json()['images'] == 2
    assert client.get('/api/v1/schema/config').get_json()['form_fields'][0]['name'] == 'model_path'


def test_a_new_task_can_start_on_a_named_dataset_and_its_own_dataset_toml(client, data_root):
    own = write_dataset(data_root / 'datasets' / 'zz-own')
    (own / 'dataset.toml').write_text('resolutions = [96]\nframe_buckets = [1, 5]\n\n[[directory]]\npath = "."\n')
    t = create(client, dataset='zz-own')
    assert t['form']['dataset'] == 'zz-own' and t['form']['resolutions'] == [96] and t['form']['frame_buckets'] == [1, 5]
    assert create(client)['form']['dataset'] == 'demo'          # default: the first folder
    r = client.post('/api/v1/tasks', json={'dataset': 'missing'})
    assert r.status_code == 404 and r.get_json()['error']['field'] == 'dataset'
    assert len(client.get('/api/v1/tasks').get_json()['tasks']) == 2     # nothing half-made


def test_the_task_list_shows_each_tasks_own_newest_run_after_a_restart_and_a_delete(make_app, data_root):
    """Runs are looked up per task (the list is polled by every open page): each task shows its own newest
    run by creation time and its run number, the same after the studio reads its records again, and a
    deleted task's runs go with it."""
    from api.services.jobs.store import new_job
    app = make_app()
    studio, c = app.extensions['odeo'], app.test_client()
    a, b, other = (create(c)['id'] for _ in range(3))
    for task, job_id, created in ((a, 'ja2', 20.0), (b, 'jb1', 5.0), (a, 'ja1', 10.0), (b, 'jb2', 30.0)):
        job = new_job(job_id, task, f'runs/{task}/{job_id}', {'gpus': 1, 'gpu_ids': None}, {'action': 'start'})
        job.update(created_at=created, state='failed' if job_id == 'ja2' else 'done', attempts=[])
        (data_root / 'runs' / task / job_id).mkdir()
        studio.jobs.save(job)

    def listed(client):
        return {t['id']: (t['state'], t['latest_job'] and (t['latest_job']['id'], t['latest_job']['run']))
                for t in client.get('/api/v1/tasks').get_json()['tasks']}
    expected = {a: ('failed', ('ja2', 2)), b: ('done', ('jb2', 2)), other: ('draft', None)}
    assert listed(c) == expected
    assert listed(make_app().test_client()) == expected          # read back from the records on disk
    assert c.delete(f'/api/v1/tasks/{a}', json={'confirm': True}).status_code == 200
    assert listed(c) == {b: ('done', ('jb2', 2)), other: ('draft', None)}
    assert studio.jobs.find('ja1') is None and [j['id'] for j in studio.jobs.all(b)] == ['jb1', 'jb2']
