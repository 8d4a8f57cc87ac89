"""The real launch path: `deepspeed --num_gpus 1 --master_port P <script> ...` on the CPU, with the fake
trainer as the script, run through the studio's scheduler."""

import pytest

from tests.support.studio import train_form, wait_until, write_dataset


@pytest.mark.slow
def test_deepspeed_launcher_runs_the_trainer_on_cpu(make_app, data_root, tiny_model):
    write_dataset(data_root / 'datasets' / 'demo', behave={'step_time': 0.02})
    app = make_app(launcher='deepspeed', gpu_backend='cpu', cpu_slots=1)
    studio, c = app.extensions['odeo'], app.test_client()
    task = c.post('/api/v1/tasks', json={'form': train_form(tiny_model, 'demo', epochs=2)}).get_json()['id']
    job = c.post(f'/api/v1/tasks/{task}/start', json={}).get_json()['id']
    rec = wait_until(lambda: (r := studio.jobs.get(job))['state'] in ('done', 'failed') and r, 90,
                     studio.scheduler.tick, every=0.2, what='the deepspeed-launched job')
    att = rec['attempts'][0]
    assert rec['state'] == 'done', c.get(f'/api/v1/jobs/{job}/log').get_json()['text'][-2000:]
    cmd = att['command']
    assert cmd[0].endswith('/deepspeed') and cmd[1:5] == ['--num_gpus', '1', '--master_port', str(att['port'])]
    assert cmd[6:] == ['--deepspeed', '--config', f'{studio.run_dir(rec)}/config.toml', '--run_dir',
                       str(studio.run_dir(rec))]
    log = c.get(f'/api/v1/jobs/{job}/log').get_json()['text']
    assert '--local_rank=0' in log and 'fake trainer: 4 steps' in log
    assert c.get(f'/api/v1/jobs/{job}/progress').get_json()['step'] == 4
