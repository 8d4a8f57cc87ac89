"""Session fixture of the Inference studio's end-to-end tests: a real studio process (`python -m api`) that
trains the tiny Wan2.1 T2V model for 2 epochs with the real train.py (DeepSpeed on the CPU), evaluating on the
demo dataset every epoch, while previews are switched on, plus one run of the base model with the preview settings for comparison.

Shared by tests/inference/test_inference_previews.py and tests/browser/test_browser_inference.py (a plugin of tests/conftest.py),
so the training runs once per session.
"""

import subprocess
import sys

import pytest

from tests.support.studio import REPO, StudioProcess, copy_tiny_model, free_port, kill_jobs, wait_until

PREVIEW = {'enabled': True, 'strengths': [1.0], 'seed': 11, 'steps': 4, 'frames': 13, 'width': 64, 'height': 48}
PROMPT = 'a red fox running through fresh snow'
FINAL = ('done', 'failed', 'stopped', 'cancelled', 'interrupted')


@pytest.fixture(scope='session')
def preview_studio(tmp_path_factory, tiny_models):
    """{'studio', 'task', 'train', 'base', 'data_root'} once training, both previews and the base run ended."""
    root = tmp_path_factory.mktemp('previews')
    data = root / 'data'
    (data / 'models').mkdir(parents=True)
    copy_tiny_model(tiny_models, data / 'models' / 'tiny')
    subprocess.run([sys.executable, 'tools/make_demo_dataset.py', '--out', str(data / 'datasets' / 'demo')],
                   cwd=REPO, check=True, capture_output=True)
    studio = StudioProcess(data, free_port(), launcher='deepspeed', trainer_script=str(REPO / 'train.py'),
                           cpu_slots=2, heartbeat_timeout_s=300.0, scheduler_interval_s=0.3,
                           stop_grace_s=30.0).start(timeout=60)
    try:
        form = {'epochs': 2, 'save_every_n_epochs': 1, 'checkpoint_every_n_epochs': None,
                'checkpoint_every_n_minutes': None, 'optimizer': 'adamw', 'learning_rate': 2e-2, 'lora_rank': 8,
                'eval_dataset': 'demo', 'eval_every_n_epochs': 1}         # eval loss for the monitor's curves
        status, task = studio.call('POST', '/tasks', {'name': 'fox', 'form': form})
        assert status == 201, task
        status, rec = studio.call('PATCH', f'/tasks/{task["id"]}/inference', {'prompts': [PROMPT], 'preview': PREVIEW})
        assert status == 200, rec
        status, train = studio.call('POST', f'/tasks/{task["id"]}/start', {})
        assert status == 202, train
        base_run = {'base': True, 'loras': [], **{k: v for k, v in PREVIEW.items() if k != 'enabled'}}
        status, base = studio.call('POST', f'/tasks/{task["id"]}/infer', base_run)
        assert status == 202, base

        def finished():
            jobs = studio.call('GET', f'/jobs?task_id={task["id"]}')[1]['jobs']
            previews = [j for j in jobs if j['origin']['action'] == 'preview']
            ours = [j for j in jobs if j['id'] in (train['id'], base['id'])] + previews
            return len(previews) >= 2 and all(j['state'] in FINAL for j in ours) and jobs

        jobs = wait_until(finished, 420, every=1.0, what='training, two previews and the base run to end')
        states = {j['id']: (j['state'], j['message']) for j in jobs}
        assert all(s == 'done' for s, _ in states.values()), states
        yield {'studio': studio, 'task': task, 'train': train, 'base': base, 'data_root': data}
    finally:
        studio.kill()
        kill_jobs(data)
