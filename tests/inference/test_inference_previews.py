"""Previews during training, end to end: the studio trains the tiny model for 2 epochs with the real
train.py while previews are on; each saved epoch gets one preview job whose video shows the LoRA (its
frames differ from the base model's for the same seed) at the frame count and size asked for; a studio
restart queues nothing twice."""

import time

import pytest

from tests.support.studio import wait_until
from tests.support.previews import PREVIEW, PROMPT
from tests.support.inference import mean_abs_diff, read_video
from tests.support.trainer import events

pytestmark = pytest.mark.slow


def _video(data_root, job, cell):
    run = data_root / job['run_dir']
    return read_video(run / cell['video'])


def test_each_saved_epoch_gets_a_preview_that_shows_the_lora(preview_studio):
    studio, task = preview_studio['studio'], preview_studio['task']
    data = preview_studio['data_root']
    results = studio.call('GET', f'/tasks/{task["id"]}/results')[1]
    previews = [j for j in results['jobs'] if j['origin']['action'] == 'preview']
    assert sorted(j['origin']['checkpoint'] for j in previews) == ['epoch1', 'epoch2']
    assert all(j['origin']['job_id'] == preview_studio['train']['id'] and j['state'] == 'done' for j in previews)

    cells = {c['job_id']: c for c in results['cells']}
    base_job = studio.call('GET', f'/jobs/{preview_studio["base"]["id"]}')[1]
    base_frames, rate, codec = _video(data, base_job, cells[base_job['id']])
    assert cells[base_job['id']]['lora'] is None
    seen = {}
    for p in previews:
        job = studio.call('GET', f'/jobs/{p["id"]}')[1]
        cell = cells[p['id']]
        assert cell['status'] == 'done' and cell['lora']['name'] == p['origin']['checkpoint']
        assert (cell['seed'], cell['prompt'], cell['strength']) == (PREVIEW['seed'], PROMPT, 1.0)
        frames, rate, codec = _video(data, job, cell)
        assert frames.shape == (PREVIEW['frames'], PREVIEW['height'], PREVIEW['width'], 3)
        assert codec == 'h264' and rate == 16
        assert (data / job['run_dir'] / cell['poster']).stat().st_size > 0
        assert mean_abs_diff(frames, base_frames) > 2.0, 'the LoRA did not change the video'
        seen[p['origin']['checkpoint']] = frames
        video = next(e for e in events(data / job['run_dir']) if e['type'] == 'artifact' and e['kind'] == 'video')
        assert video['epoch'] == int(p['origin']['checkpoint'][5:]) and video['path'] == cell['video']
        assert (video['frames'], video['width'], video['height'], video['seed']) == (13, 64, 48, 11)
    assert base_frames.shape == seen['epoch1'].shape
    assert mean_abs_diff(seen['epoch1'], seen['epoch2']) > 0.5          # two epochs, two different LoRAs


def test_a_studio_restart_queues_no_preview_twice(preview_studio):
    studio, task = preview_studio['studio'], preview_studio['task']
    studio.terminate()
    studio.start(timeout=60)

    def preview_jobs():
        return [j for j in studio.call('GET', f'/jobs?task_id={task["id"]}')[1]['jobs']
                if j['origin']['action'] == 'preview']

    assert wait_until(lambda: studio.call('GET', '/health')[1]['scheduler_running'], 20, what='the scheduler')
    time.sleep(2.0)                                   # several scheduler ticks of the new studio
    assert len(preview_jobs()) == 2
    settings = studio.call('GET', f'/tasks/{task["id"]}/inference')[1]
    assert settings['preview']['enabled'] and settings['preview_error'] is None
