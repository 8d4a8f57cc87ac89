"""Evaluation and samples in a real Chromium: the configuration form's eval data (a Data-area dataset or a
held-out share) with its warning when nothing would be evaluated; the monitor's eval loss and gradient norm
curves and each saved epoch's sample videos; a batch evaluation from the Inference area over two CPU slots with
its results table, and the tab title and browser notification when it is done. Screenshots go to
test-artifacts/screenshots/."""

import re

import pytest

from tests.support.previews import PROMPT
from tests.support.studio import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTIFICATION_STUB = """
window.__notes = [];
window.Notification = class {
  constructor(title, options) { window.__notes.push({ title, body: (options || {}).body }); }
  static get permission() { return 'granted'; }
  static requestPermission() { return Promise.resolve('granted'); }
};
"""


@pytest.fixture
def viewport():
    return {'width': 1400, 'height': 950}


def new_task(studio, name='fox'):
    status, task = studio.api('POST', 'tasks', {'name': name, 'form': {'dataset': 'demo'}})
    assert status == 201, task
    return task


def test_the_form_chooses_eval_data_and_warns_when_there_is_none(studio_server, page, shot):
    task = new_task(studio_server)
    page.goto(f'{studio_server.url}#/training/{task["id"]}?tab=config')
    page.wait_for_selector('select[name=eval_dataset] option[value=demo]', state='attached')
    warning = 'label[data-field=eval_every_n_epochs] .eval-warning'
    assert page.is_hidden(warning)
    page.fill('input[name=eval_every_n_epochs]', '1')
    page.wait_for_selector(warning, state='visible')
    page.wait_for_selector('.save-status:has-text("All changes saved")')
    assert 'Nothing to evaluate' in page.inner_text(warning)
    shot('form-eval-warning')
    page.fill('input[name=eval_split]', '0.1')
    page.wait_for_selector(warning, state='hidden')
    page.wait_for_function(f"""async () => (await (await fetch('/api/v1/tasks/{task["id"]}')).json())
        .toml.dataset.includes('eval_split = 0.1')""")
    page.wait_for_selector('.save-status:has-text("All changes saved")')
    page.fill('input[name=eval_split]', '')
    page.wait_for_function(f"""async () => !(await (await fetch('/api/v1/tasks/{task["id"]}')).json())
        .toml.dataset.includes('eval_split')""")
    page.wait_for_selector('.save-status:has-text("All changes saved")')
    page.select_option('select[name=eval_dataset]', 'demo')
    page.wait_for_function(f"""async () => {{
        const t = await (await fetch('/api/v1/tasks/{task["id"]}')).json();
        return t.form.eval_dataset === 'demo' && !t.toml.dataset.includes('eval_split')
          && t.toml.main.includes('/datasets/demo/dataset.toml'); }}""")
    assert page.is_hidden(warning)

    def saved():
        toml = studio_server.api('GET', f'tasks/{task["id"]}')[1]['toml']
        return re.search(r'name = "demo"\nconfig = ".*/datasets/demo/dataset.toml"', toml['main']) and \
            'eval_split' not in toml['dataset'] and 'eval_every_n_epochs = 1' in toml['main']
    # (waiting through the page, so that Playwright keeps serving it meanwhile)
    wait_until(lambda: page.wait_for_timeout(200) or saved(), 10, what='the eval dataset in config.toml')
    # sample prompts of the form are the task's preview settings
    page.fill('textarea[name=sample_prompts]', 'a red fox in snow\na hare')
    page.check('input[name=samples_enabled]')
    page.wait_for_selector('.samples-status:has-text("Samples saved")')
    rec = studio_server.api('GET', f'tasks/{task["id"]}/inference')[1]
    assert rec['prompts'] == ['a red fox in snow', 'a hare'] and rec['preview']['enabled']
    shot('form-eval-and-samples')


def test_the_monitor_draws_eval_curves_and_shows_each_epochs_samples(preview_studio, page, shot):
    studio, task, train = preview_studio['studio'], preview_studio['task'], preview_studio['train']
    base = studio.base.replace('/api/v1', '')
    page.goto(f'{base}/#/training/{task["id"]}?tab=monitor&job={train["id"]}')
    page.wait_for_selector('.eval-chart[data-series*="eval/demo/loss"] canvas')
    page.wait_for_selector('.grad-chart[data-series*="train/grad_norm"] canvas')
    steps = page.eval_on_selector_all('table.eval-losses tbody tr', 'rs => rs.map(r => Number(r.dataset.step))')
    assert len(steps) == 3 and steps[0] == 0                      # before the first step, then after each epoch
    page.wait_for_selector('.samples-epoch[data-epoch="2"] video')
    epochs = page.eval_on_selector_all('.samples-epoch', 'es => es.map(e => e.dataset.epoch)')
    assert epochs == ['1', '2']
    assert PROMPT in page.inner_text('.samples-epoch[data-epoch="1"] figcaption')
    page.wait_for_function("() => [...document.querySelectorAll('.samples-card video')].every(v => v.readyState >= 2)")
    page.eval_on_selector('.eval-card', 'e => e.scrollIntoView()')
    shot('monitor-eval-and-samples')
    page.click('#tab-config')
    page.wait_for_selector('textarea[name=sample_prompts]')
    page.wait_for_function(f"() => document.querySelector('textarea[name=sample_prompts]').value === {PROMPT!r}")
    assert page.is_checked('input[name=samples_enabled]')


def test_a_batch_evaluation_over_two_slots_shows_its_table_and_notifies(start_studio, page, shot):
    studio = start_studio(cpu_slots=2)
    task = new_task(studio)
    page.context.grant_permissions(['notifications'], origin=studio.url.rstrip('/'))
    page.add_init_script(NOTIFICATION_STUB)
    page.goto(f'{studio.url}#/inference/{task["id"]}?tab=batch')
    page.wait_for_selector('form.inf-batch')
    page.click('button.notify-me')
    page.wait_for_selector('button.notify-me[aria-pressed=true]')
    page.fill('textarea[name=rows]', 'prompt\na red fox\n"a hare, running"\na grey owl\n')
    for name, value in (('gpus', '2'), ('steps', '2'), ('frames', '5'), ('width', '32'), ('height', '32')):
        page.fill(f'input[name={name}]', value)
    assert page.inner_text('.batch-count') == '3 rows · 3 videos over 2 workers'
    page.click('form.inf-batch button[type=submit]')
    page.wait_for_selector('table.batch-results-table tbody tr[data-status=done] video', timeout=240000)
    statuses = page.eval_on_selector_all('table.batch-results-table tbody tr', 'rs => rs.map(r => r.dataset.status)')
    assert statuses == ['done', 'done', 'done']
    workers = page.eval_on_selector_all('table.batch-results-table tbody tr td:nth-child(7)', 'ts => ts.map(t => t.textContent)')
    assert sorted(workers) == ['0', '0', '1']
    assert 'a hare, running' in page.inner_text('table.batch-results-table')
    page.wait_for_function("() => document.title.startsWith('(1) ✓ fox evaluation done')", timeout=20000)
    assert page.title() == '(1) ✓ fox evaluation done — ODEO Studio'
    notes = page.evaluate('window.__notes')
    assert len(notes) == 1 and notes[0]['title'] == 'ODEO Studio: ✓ fox evaluation done'
    shot('batch-eval-results')
    page.click('a.button:has-text("Open the grid")')
    page.wait_for_selector('table.inf-grid video')
    shot('batch-eval-grid')
