"""The whole chain with the real trainer: the studio launches train.py through `deepspeed --num_gpus 1`
on the CPU, on the tiny Wan model and the demo dataset, follows it to the end, lists its LoRAs and
checkpoints, and continues the finished run for one more epoch from its final checkpoint."""

import subprocess
import sys

import pytest

from tests.support.studio import REPO, wait_until


@pytest.mark.slow
def test_studio_trains_and_continues_with_train_py(make_app, data_root, tiny_model):
    subprocess.run([sys.executable, 'tools/make_demo_dataset.py', '--out', str(data_root / 'datasets' / 'demo')],
                   cwd=REPO, check=True, capture_output=True)
    app = make_app(launcher='deepspeed', trainer_script=str(REPO / 'train.py'), cpu_slots=1,
                   heartbeat_timeout_s=300.0, scheduler_interval_s=0.5)
    studio, c = app.extensions['odeo'], app.test_client()
    form = {'epochs': 2, 'checkpoint_every_n_minutes': None, 'checkpoint_every_n_epochs': 1, 'save_every_n_epochs': 1,
            'optimizer': 'adamw', 'learning_rate': 5e-3, 'lora_rank': 4}
    task = c.post('/api/v1/tasks', json={'form': form}).get_json()
    assert task['form']['model_path'] == str(tiny_model) and task['form']['dataset'] == 'demo'
    assert task['form']['resolutions'] == [64]                 # taken from the dataset's own dataset.toml

    def finished(job_id):
        return lambda: (j := studio.jobs.get(job_id))['state'] in ('done', 'failed', 'stopped') and j

    job = c.post(f'/api/v1/tasks/{task["id"]}/start', json={}).get_json()['id']
    rec = wait_until(finished(job), 300, studio.scheduler.tick, every=0.5, what='train.py to finish')
    log = c.get(f'/api/v1/jobs/{job}/log?tail=4000').get_json()['text']
    assert rec['state'] == 'done', log
    progress = c.get(f'/api/v1/jobs/{job}/progress').get_json()
    assert progress['status'] == 'done' and progress['step'] == progress['total_steps'] > 0
    steps = progress['total_steps']
    loss = c.get(f'/api/v1/jobs/{job}/metrics?names=train/loss').get_json()['series']['train/loss']
    assert loss['steps'] == list(range(1, steps + 1))
    loras = c.get(f'/api/v1/jobs/{job}/artifacts').get_json()['loras']
    assert [l['name'] for l in loras] == ['epoch1', 'epoch2']
    lora = c.get(f'/api/v1/jobs/{job}/files/{loras[-1]["files"][0]["path"]}')
    assert lora.status_code == 200 and len(lora.data) == loras[-1]['files'][0]['size']
    ckpts = c.get(f'/api/v1/jobs/{job}/checkpoints').get_json()['checkpoints']
    assert ckpts[-1]['step'] == steps

    more = c.post(f'/api/v1/jobs/{job}/continue', json={'epochs': 3}).get_json()
    rec = wait_until(finished(more['id']), 300, studio.scheduler.tick, every=0.5, what='the continued run')
    assert rec['state'] == 'done', c.get(f'/api/v1/jobs/{more["id"]}/log?tail=4000').get_json()['text']
    assert rec['attempts'][0]['resume_from'].endswith(f'checkpoints/{ckpts[-1]["tag"]}')
    progress = c.get(f'/api/v1/jobs/{more["id"]}/progress').get_json()
    assert progress['step'] == progress['total_steps'] == steps * 3 // 2
    loss = c.get(f'/api/v1/jobs/{more["id"]}/metrics?names=train/loss').get_json()['series']['train/loss']
    assert loss['steps'][0] == steps + 1
