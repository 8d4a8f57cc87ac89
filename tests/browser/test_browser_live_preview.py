"""Live previews in a real Chromium: the model manager lists the tiny TAEHVs, the task picks one in
"Prompts & previews" (only the one whose latent channels match its model is offered), a tiny embedded
render streams its per-step preview into the running job's box before the cell's video exists, and the
job's Stop button cancels the render there."""

import pytest

from models.taehv.model import write_tiny_taehv
from tests.support.studio import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_a_render_streams_its_preview_and_is_stopped_from_it(start_studio, page, shot):
    studio = start_studio()
    taehv = write_tiny_taehv(studio.data_root / 'models' / 'tiny')
    model = studio.api('GET', 'models')[1]['models'][0]['path']
    status, task = studio.api('POST', 'tasks', {'name': 'fox', 'form': {'model_path': model}})
    assert status == 201, task
    tid = task['id']
    assert studio.api('PATCH', f'tasks/{tid}/inference', {'prompts': ['a red fox']})[0] == 200

    page.goto(studio.url + '#/models')                                      # the model manager lists both
    page.wait_for_selector('.taehv-table tr[data-path]')
    cells = page.eval_on_selector_all('.taehv-table tbody tr', 'rs => rs.map(r => r.cells[1].textContent)')
    assert sorted(cells) == ['16', '48']
    page.goto(studio.url + f'#/inference/{tid}?tab=settings')
    page.wait_for_selector('form.inf-settings select[name=taehv]')
    options = page.eval_on_selector_all('select[name=taehv] option', 'os => os.map(o => o.value)')
    assert options == ['', str(taehv['tiny-taew2_1'].resolve())]          # the 48-channel one is not offered
    page.select_option('select[name=taehv]', str(taehv['tiny-taew2_1'].resolve()))
    page.click('form.inf-settings button[type=submit]')
    wait_until(lambda: studio.api('GET', f'tasks/{tid}/inference')[1]['preview']['taehv'], 10, what='the pick saved')

    prompts = ['a red fox', 'a grey hare', 'a brown owl', 'a white stoat']           # 4 cells: long enough to stop
    status, job = studio.api('POST', f'tasks/{tid}/infer', {'base': True, 'steps': 200, 'frames': 5, 'width': 64,
                                                            'height': 48, 'prompts': prompts})
    assert status == 202, job
    page.goto(studio.url + f'#/inference/{tid}')
    img = page.wait_for_selector(f'.inf-job[data-job="{job["id"]}"] .inf-live-cell img[src*="/previews/c000?step="]',
                                 timeout=90_000)
    page.wait_for_function('(img) => img.complete && img.naturalWidth === 64 && img.naturalHeight === 48', arg=img)
    cell = studio.api('GET', f'tasks/{tid}/results')[1]['cells'][0]
    assert cell['status'] == 'running' and cell['video'] is None and cell['preview_step'] < 200
    first = img.get_attribute('src')
    page.wait_for_function('(first) => { const i = document.querySelector(".inf-live-cell img"); '
                           'return i && i.getAttribute("src") !== first; }', arg=first, timeout=30_000)   # it moves on
    assert 'step ' in page.inner_text('.inf-live-cell figcaption')
    shot('inference-live-preview')

    page.click(f'.inf-job[data-job="{job["id"]}"] button:has-text("Stop")')
    state = wait_until(lambda: (s := studio.api('GET', f'jobs/{job["id"]}')[1]['state']) in ('stopped', 'done', 'failed')
                       and s, 60, what='the stop')
    assert state == 'stopped'
    cells = studio.api('GET', f'tasks/{tid}/results')[1]['cells']
    assert cells[-1]['status'] == 'skipped' and cells[-1]['video'] is None
    page.wait_for_function('() => !document.querySelector(".inf-live-cell")')
