"""The Training and GPUs areas in a real Chromium against a real studio running the real trainer on the CPU:
create a task on the demo dataset, see a validation issue next to its field and in the TOML editor, start,
watch loss points arrive, stop, resume, finish, download the LoRA; the URL keeps the view through reload,
back and forward; the GPUs area says there is no GPU (and, with a stand-in nvidia-smi, shows GPU cards)."""

import os
import stat

import pytest
from playwright.sync_api import expect
from safetensors import safe_open

pytestmark = pytest.mark.browser

# Long enough that a stop lands mid-run (20 epochs x 12 items x 4 repeats = 960 steps, about 15 s here),
# short enough to finish twice in the time budget; saves only every 10 epochs.
FORM = {'#f-epochs': '20', '#f-num_repeats': '4', '#f-lora_rank': '4', '#f-learning_rate': '5e-3',
        '#f-optimizer': 'adamw', '#f-save_every_n_epochs': '10', '#f-checkpoint_every_n_epochs': '10',
        '#f-checkpoint_every_n_minutes': '', '#f-warmup_steps': ''}


def chart_points(page):
    return int(page.locator('.loss-chart').get_attribute('data-points') or 0)


def wait_state(page, state, timeout):
    page.wait_for_function(f"() => document.querySelector('.progress-card')?.dataset.state === '{state}'", timeout=timeout)


def test_train_stop_resume_finish_and_download_in_the_browser(studio_server, page, shot, tmp_path):
    page.goto(studio_server.url + '#/training')
    page.get_by_text('No training tasks yet').wait_for()
    shot('training-empty')
    page.click('#create-demo')
    page.wait_for_url('**/#/training/wan-*?tab=config')
    task_id = page.url.split('#/training/')[1].split('?')[0]

    # the form: fields saved as you type (debounced PATCH), the model's variant detected
    page.locator('#f-model_path-variant').filter(has_text='wan2.1-t2v-1.3b').wait_for()
    for selector, value in FORM.items():
        page.fill(selector, value)
    page.locator('.save-status', has_text='All changes saved').wait_for()
    form = studio_server.api('GET', f'tasks/{task_id}')[1]['form']
    assert (form['epochs'], form['num_repeats'], form['lora_rank'], form['learning_rate']) == (20, 4, 4, 5e-3)
    assert form['dataset'] == 'demo' and form['checkpoint_every_n_minutes'] is None

    # a frame bucket that is not 4n+1: the message shows next to the field, and on its line in the TOML editor
    page.fill('#f-frame_buckets', '1, 32')
    issue = page.locator('#f-frame_buckets-issue')
    issue.filter(has_text='4n+1').wait_for()
    assert 'invalid' in page.locator('[data-field="frame_buckets"]').get_attribute('class')
    page.click('#tab-toml')
    assert 'tab=toml' in page.url
    editor = page.locator('.toml-editor[data-file="dataset.toml"]')
    bad_line = int(editor.locator('.code-gutter div.bad').first.inner_text())
    text = editor.locator('textarea').input_value()
    assert text.split('\n')[bad_line - 1].startswith('frame_buckets')
    assert '4n+1' in editor.locator('.code-issues').inner_text()
    page.click('#tab-config')
    page.fill('#f-frame_buckets', '1, 9, 17')
    page.wait_for_function("() => document.querySelector('#f-frame_buckets-issue').textContent === ''")

    # reload keeps the view and the saved draft
    page.locator('.save-status', has_text='All changes saved').wait_for()
    page.reload()
    page.locator('#f-epochs').wait_for()
    assert 'tab=config' in page.url and page.input_value('#f-epochs') == '20'
    assert page.input_value('#f-frame_buckets') == '1, 9, 17'

    # start on one CPU slot; loss points arrive on the chart while it trains
    page.click('#start-task')
    page.click('dialog.start-dialog button[type=submit]')
    page.wait_for_url('**tab=monitor&job=*')
    job_id = page.url.split('job=')[1]
    page.wait_for_function("() => +document.querySelector('.loss-chart')?.dataset.points >= 3", timeout=120000)
    assert page.locator('.loss-chart canvas').count() > 0
    assert page.locator('.progress-card').get_attribute('data-state') == 'running'
    shot('task-training')

    page.get_by_role('button', name='Stop', exact=True).click()
    page.click('dialog.confirm button.danger')
    wait_state(page, 'stopped', 90000)
    progress = studio_server.api('GET', f'jobs/{job_id}/progress')[1]
    total = progress['total_steps']
    assert total == 960 and 0 < progress['step'] < total, progress
    expect(page.get_by_role('button', name='Resume')).to_be_enabled()

    page.get_by_role('button', name='Resume').click()
    wait_state(page, 'done', 180000)
    page.wait_for_function(f"() => +document.querySelector('.loss-chart').dataset.points === {total}", timeout=15000)
    assert page.locator('.attempts summary').inner_text().startswith('Attempts (2)')
    expect(page.get_by_role('button', name='Continue')).to_be_enabled()
    shot('task-done')

    # the newest LoRA downloads as a real safetensors file with ComfyUI keys
    link = page.locator('.artifact-loras a.download').first
    link.wait_for()
    assert link.get_attribute('data-path') == 'epoch20/adapter_model.safetensors'
    with page.expect_download() as info:
        link.click()
    saved = tmp_path / 'lora.safetensors'
    info.value.save_as(saved)
    with safe_open(str(saved), 'pt') as f:
        keys = list(f.keys())
    assert keys and all(k.startswith('diffusion_model.blocks.') for k in keys)
    assert any(k.endswith('.lora_A.weight') for k in keys) and any(k.endswith('.lora_B.weight') for k in keys)

    # back: the task list (the task done, its latest loss); forward: the same run in the monitor
    page.go_back()
    row = page.locator(f'tr[data-task="{task_id}"]')
    row.locator('.badge.done').wait_for()
    assert row.locator('td.num').inner_text() not in ('', '–')
    shot('task-list')
    page.go_forward()
    wait_state(page, 'done', 15000)
    assert f'job={job_id}' in page.url and page.locator('#run-select').input_value() == job_id

    # leaving the task page ends its polling
    page.click('#nav a[href="#/gpus"]')
    page.locator('.gpu-card').first.wait_for()
    asked = []
    page.on('request', lambda r: asked.append(r.url))
    page.wait_for_timeout(3500)
    assert any('/api/v1/gpus' in u for u in asked)
    # the task page's own polling (its task, its job) ended; the app-wide run notifier lists jobs and tasks
    assert not [u for u in asked if f'/api/v1/tasks/{task_id}' in u or f'/api/v1/jobs/{job_id}' in u], asked


def test_gpus_area_explains_the_cpu_mode(studio_server, page, shot):
    page.goto(studio_server.url + '#/gpus')
    notice = page.locator('.notice.no-gpu')
    notice.wait_for()
    assert 'No GPU: jobs run on the CPU (1 slot)' in notice.inner_text()
    assert page.locator('.gpu-card').count() == 1
    assert 'No run on it' in page.locator('.gpu-card').inner_text()
    shot('gpus-cpu')


def test_gpu_cards_show_memory_load_and_outside_use(start_studio, page, shot, tmp_path):
    """Two GPUs as nvidia-smi reports them (a stand-in script speaking its CSV), one busy outside the studio."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    smi = bin_dir / 'nvidia-smi'
    smi.write_text('#!/bin/sh\n'
                   'echo "0, NVIDIA A100-SXM4-80GB, 81920, 512, 3, 34"\n'
                   'echo "1, NVIDIA A100-SXM4-80GB, 81920, 40960, 97, 71"\n')
    smi.chmod(smi.stat().st_mode | stat.S_IXUSR)
    studio = start_studio(env={'PATH': f'{bin_dir}{os.pathsep}{os.environ["PATH"]}'}, gpu_backend='nvidia-smi')
    page.goto(studio.url + '#/gpus')
    cards = page.locator('.gpu-card')
    cards.nth(1).wait_for()
    assert page.locator('.notice.no-gpu').count() == 0
    first, second = cards.nth(0).inner_text(), cards.nth(1).inner_text()
    assert 'NVIDIA A100-SXM4-80GB' in first and '0.5 GiB / 80 GiB' in first and '3 %' in first and '34 °C' in first
    assert 'Busy outside the studio' in second and '40 GiB / 80 GiB' in second and '71 °C' in second
    assert page.locator('.gpu-summary').inner_text().startswith('1 of 2 GPUs free')
    shot('gpus-gpu')
