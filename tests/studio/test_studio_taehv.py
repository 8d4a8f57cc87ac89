"""The `taehv` job kind: POST /tasks/<id>/taehv queues a TAEHV run beside the task's LoRA runs, its config made
from the task's draft (dataset, Wan model) and checked with the TAEHV trainer's schema; it launches
train_taehv.py like `train` launches train.py, and resumes like it."""

from pathlib import Path

from tests.support.studio import train_form, write_dataset


def _task(make_app, data_root):
    """A task on a dataset and a model folder (queueing reads neither's weights: the trainer checks the files)."""
    write_dataset(data_root / 'datasets' / 'demo')
    app = make_app()
    c = app.test_client()
    task = c.post('/api/v1/tasks', json={'form': train_form(data_root / 'models' / 'wan', 'demo')}).get_json()['id']
    return app, c, task


def test_taehv_job_is_queued_with_a_config_the_trainer_accepts(make_app, data_root):
    from api.services.jobs.launcher import build, resumable
    from models.taehv.config import load_taehv_config
    app, c, task = _task(make_app, data_root)
    studio = app.extensions['odeo']
    r = c.post(f'/api/v1/tasks/{task}/taehv', json={'taehv': {'preset': 'tiny-taew2_1', 'adversarial_weight': 0.1},
                                                     'settings': {'max_steps': 20}})
    assert r.status_code == 202, r.get_json()
    job = studio.jobs.get(r.get_json()['id'])
    assert job['kind'] == 'taehv' and resumable(job)
    run = studio.run_dir(job)
    cfg = load_taehv_config(run / 'config.toml', world_size=1)
    assert cfg['dataset'] == str(run / 'dataset.toml') and (run / 'dataset.toml').is_file()
    assert cfg['wan']['ckpt_path'] == str(data_root / 'models' / 'wan') and cfg['taehv']['adversarial_weight'] == 0.1
    assert cfg['max_steps'] == 20 and cfg['epochs'] == 3                 # the task's epochs, the request's max_steps
    cmd, _ = build(studio.settings, job, 'cpu', [0], 29500, run, resume_from=str(run / 'checkpoints' / 'step8'))
    i = next(k for k, a in enumerate(cmd) if a.endswith('.py'))
    assert Path(cmd[i]).name == 'train_taehv.py'
    assert cmd[i + 1:] == ['--deepspeed', '--config', str(run / 'config.toml'), '--run_dir', str(run),
                           '--resume_from_checkpoint', str(run / 'checkpoints' / 'step8')]
    assert c.get(f'/api/v1/tasks/{task}').get_json()['state'] == 'draft'     # a taehv job does not make the task busy


def test_a_bad_taehv_key_is_refused_naming_it(make_app, data_root):
    app, c, task = _task(make_app, data_root)
    r = c.post(f'/api/v1/tasks/{task}/taehv', json={'taehv': {'preset': 'tiny-taew2_1', 'adversarial_wieght': 1}})
    assert r.status_code == 422
    err = r.get_json()['error']
    assert err['field'] == 'taehv' and "did you mean 'adversarial_weight'" in err['message']
    assert [i['field'] for i in err['issues']] == ['taehv.adversarial_wieght']
    assert not app.extensions['odeo'].jobs.all(task)
