"""What a task hands out and takes in as files: saved LoRAs download under names that tell them apart,
the log reads backwards from its end, and a task's TOML pair imports from and exports to diffusion-pipe's
dialect."""

import tomllib

from api.services.jobs.logs import read_log, read_log_before
from api.services.jobs.service import safe_file_name
from api.services.jobs.store import new_job


def add_train_job(studio, task_id, job_id, created_at):
    job = new_job(job_id, task_id, f'runs/{task_id}/{job_id}', {'gpus': 1, 'gpu_ids': None}, {'action': 'start'})
    job.update(created_at=created_at, state='done', attempts=[{'devices': [0]}])
    run = studio.paths.runs / task_id / job_id
    run.mkdir()
    studio.jobs.save(job)
    return run


def test_lora_downloads_are_named_by_task_run_epoch_and_expert(make_app, tiny_model):
    app = make_app()
    studio, client = app.extensions['odeo'], app.test_client()
    task = client.post('/api/v1/tasks', json={'name': 'Fox / snow: v2'}).get_json()['id']
    add_train_job(studio, task, 'j1', 1.0)
    run = add_train_job(studio, task, 'j2', 2.0)
    (run / 'epoch4').mkdir()
    (run / 'epoch4' / 'adapter_model.safetensors').write_bytes(b'x' * 10)
    (run / 'epoch4' / 'adapter_model_high_noise.safetensors').write_bytes(b'y' * 10)
    (run / 'log.txt').write_text('hello\n')

    r = client.get('/api/v1/jobs/j2/files/epoch4/adapter_model.safetensors')
    assert r.status_code == 200 and r.data == b'x' * 10
    assert 'attachment' in r.headers['Content-Disposition']
    assert 'filename=Fox_snow_v2-run2-epoch4.safetensors' in r.headers['Content-Disposition']
    r = client.get('/api/v1/jobs/j2/files/epoch4/adapter_model_high_noise.safetensors')
    assert 'filename=Fox_snow_v2-run2-epoch4-high_noise.safetensors' in r.headers['Content-Disposition']
    assert (run / 'epoch4' / 'adapter_model.safetensors').is_file()            # the file on disk keeps its name
    r = client.get('/api/v1/jobs/j2/files/log.txt')
    assert 'attachment' not in r.headers.get('Content-Disposition', '')
    jobs = client.get(f'/api/v1/tasks/{task}').get_json()['jobs']
    assert [(j['id'], j['run']) for j in jobs] == [('j1', 1), ('j2', 2)]
    assert safe_file_name('../../etc/passwd') == 'etc_passwd' and safe_file_name('"\r\n') == 'download'


def test_log_reads_backwards_from_the_end_in_whole_lines(tmp_path):
    log = tmp_path / 'log.txt'
    log.write_bytes(b''.join(f'line {i:04d}\n'.encode() for i in range(100)))   # 10 bytes a line
    end = read_log(log, 0, max_bytes=1000, tail=35)
    assert end['text'] == 'line 0097\nline 0098\nline 0099\n' and end['offset'] == 970
    back = read_log_before(log, end['offset'], max_bytes=35)
    assert back['text'] == 'line 0094\nline 0095\nline 0096\n'
    assert (back['offset'], back['next_offset'], back['start']) == (940, 970, False)
    first = read_log_before(log, 20, max_bytes=1000)
    assert first['text'] == 'line 0000\nline 0001\n' and first['offset'] == 0 and first['start']
    assert read_log_before(log, 10 ** 9, max_bytes=10)['next_offset'] == 1000
    long_line = tmp_path / 'long.txt'
    long_line.write_bytes(b'a' * 100 + b'\nb\n')
    cut = read_log_before(long_line, 101, max_bytes=40)                       # a line longer than the window
    assert cut['offset'] == 61 and cut['text'] == 'a' * 39 + '\n'


def test_log_endpoint_reads_before_an_offset(make_app, tiny_model):
    app = make_app()
    studio, client = app.extensions['odeo'], app.test_client()
    task = client.post('/api/v1/tasks', json={}).get_json()['id']
    run = add_train_job(studio, task, 'j1', 1.0)
    (run / 'log.txt').write_bytes(b'one\ntwo\nthree\n')
    out = client.get('/api/v1/jobs/j1/log?before=8').get_json()
    assert out['text'] == 'one\ntwo\n' and out['offset'] == 0 and out['start']


MAIN = """\
# a diffusion-pipe config
output_dir = '/home/someone/training_output'
dataset = 'examples/dataset.toml'
epochs = 7

[model]
type = 'wan'
ckpt_path = '/somewhere/Wan2.1-T2V-1.3B'
dtype = 'bfloat16'

[adapter]
type = 'lora'
rank = 8   # small

[optimizer]
type = 'adamw_optimi'
lr = 3e-5
"""

DATASET = """\
resolutions = [256]
frame_buckets = [1, 17]

[[directory]]
path = '/home/someone/data'
num_repeats = 3
"""


def test_import_a_diffusion_pipe_config_and_export_it_again(make_app, tiny_model):
    client = make_app().test_client()
    r = client.post('/api/v1/tasks/import', json={'main': MAIN, 'dataset': DATASET, 'name': 'imported'})
    assert r.status_code == 201, r.get_json()
    task = r.get_json()
    assert task['name'] == 'imported'
    assert (task['form']['epochs'], task['form']['lora_rank'], task['form']['learning_rate']) == (7, 8, 3e-5)
    assert task['form']['num_repeats'] == 3 and task['form']['frame_buckets'] == [1, 17]
    main = tomllib.loads(task['toml']['main'])
    assert 'output_dir' not in main and 'dataset' not in main
    assert '# small' in task['toml']['main']                                  # comments kept

    only_main = client.post('/api/v1/tasks/import', json={'main': MAIN}).get_json()
    assert only_main['form']['epochs'] == 7 and only_main['toml']['dataset'].strip()   # the default dataset draft

    bad = client.post('/api/v1/tasks/import', json={'main': 'epochs = = 3'})
    assert bad.status_code == 400 and 'config.toml' in bad.get_json()['error']['message']
    assert client.post('/api/v1/tasks/import', json={}).status_code == 400

    r = client.get(f'/api/v1/tasks/{task["id"]}/toml/main')
    assert r.status_code == 200 and 'filename="imported-config.toml"' in r.headers['Content-Disposition']
    exported = tomllib.loads(r.data.decode())
    assert exported['dataset'] == 'imported-dataset.toml' and exported['epochs'] == 7
    r = client.get(f'/api/v1/tasks/{task["id"]}/toml/dataset')
    assert 'filename="imported-dataset.toml"' in r.headers['Content-Disposition']
    assert tomllib.loads(r.data.decode())['directory'][0]['num_repeats'] == 3
    assert client.get(f'/api/v1/tasks/{task["id"]}/toml/other').status_code == 400
