"""Every area in a real Chromium, as a new user first sees it: each form's defaults are valid for its own
inputs (checkValidity() on every input of every form, and the default test run is queued from the page);
the Settings page checks before it saves; the bucket view says which files are upscaled and by how much;
the theme follows prefers-color-scheme and a toggle kept in localStorage; screenshots of every area in
light and dark go to test-artifacts/screenshots/theme-<area>-<light|dark>.png."""

import pytest

from tests.support import mediagen

pytestmark = [pytest.mark.browser, pytest.mark.slow]

INVALID_INPUTS = """() => [...document.querySelectorAll('input, select, textarea')]
  .filter((el) => el.willValidate && !el.checkValidity())
  .map((el) => `${el.name || el.getAttribute('aria-label') || el.id}=${JSON.stringify(el.value)}: ${el.validationMessage}`)"""
FORMS_VALID = """() => [...document.querySelectorAll('form')].filter((f) => !f.checkValidity()).map((f) => f.className)"""


@pytest.fixture
def viewport():
    return {'width': 1400, 'height': 1000}


def areas(tid):
    return [('training', '#/training', 'main .area-view *'), ('task', f'#/training/{tid}', 'main .area-view *'),
            ('data', '#/data', 'tr[data-dataset="demo"]'), ('buckets', '#/data/demo?tab=buckets', '.buckets-table tbody tr'),
            ('inference', '#/inference', 'table.inf-tasks'), ('inference-run', f'#/inference/{tid}?tab=run', 'form.inf-run'),
            ('inference-settings', f'#/inference/{tid}?tab=settings', 'form.inf-settings'),
            ('models', '#/models', 'main .area-view *'), ('gpus', '#/gpus', '.resource-chart .uplot'),
            ('settings', '#/settings', 'form.settings-form')]


def show(page, url, ready):
    page.goto(url)
    try:
        page.wait_for_selector(ready)
    except Exception:
        page.screenshot(path="/tmp/uisys_fail.png")
        raise AssertionError(f'{url}: {ready} not shown; the page says: {page.inner_text("main")[:800]}') from None
    page.wait_for_load_state('networkidle')


def a_task(studio):
    model = studio.api('GET', 'models')[1]['models'][0]['path']            # the demo's tiny Wan2.1 T2V
    status, task = studio.api('POST', 'tasks', {'name': 'fox', 'form': {'model_path': model}})
    assert status == 201, task
    assert studio.api('PATCH', f'tasks/{task["id"]}/inference', {'prompts': ['a red fox']})[0] == 200
    return task['id']


def test_every_form_default_is_valid_and_the_default_test_run_queues(studio_server, page):
    tid = a_task(studio_server)
    for name, hash_, ready in areas(tid):
        show(page, studio_server.url + hash_, ready)
        assert page.evaluate(INVALID_INPUTS) == [], name
        assert page.evaluate(FORMS_VALID) == [], name
    page.goto(studio_server.url + f'#/inference/{tid}?tab=run')
    page.click('form.inf-run button[type=submit]')
    page.wait_for_selector('.inf-job[data-job]')              # the browser let the form go and the studio queued it
    jobs = studio_server.api('GET', f'jobs?task_id={tid}')[1]['jobs']
    assert [j['kind'] for j in jobs] == ['infer']


@pytest.mark.parametrize('theme', ['light', 'dark'])
def test_every_area_in_both_themes(studio_server, page, shot, theme):
    tid = a_task(studio_server)
    mediagen.image(studio_server.data_root / 'datasets' / 'demo' / 'small.png', 48, 36)      # smaller than its 64x64-area bucket
    mediagen.caption(studio_server.data_root / 'datasets' / 'demo' / 'small.png', 'a small still')
    page.emulate_media(color_scheme=theme)
    for name, hash_, ready in areas(tid):
        show(page, studio_server.url + hash_, ready)
        assert page.evaluate('document.documentElement.dataset.theme') == theme
        bg = page.evaluate('getComputedStyle(document.body).backgroundColor')
        assert (bg == 'rgb(17, 21, 28)') == (theme == 'dark'), (name, bg)
        if name == 'buckets':
            assert 'upscaled' in page.inner_text('.upscaled-files tr[data-file="small.png"]')
        shot(f'theme-{name}-{theme}')


def test_the_theme_toggle_is_kept(studio_server, page):
    page.emulate_media(color_scheme='light')
    page.goto(studio_server.url + '#/gpus')
    page.wait_for_selector('#theme-toggle')
    assert page.evaluate('document.documentElement.dataset.theme') == 'light'
    page.click('#theme-toggle')
    assert page.evaluate('document.documentElement.dataset.theme') == 'dark'
    assert page.evaluate("localStorage.getItem('odeo.theme')") == 'dark'
    page.reload()
    page.wait_for_selector('#theme-toggle')
    assert page.evaluate('document.documentElement.dataset.theme') == 'dark'       # the pick beats the system's


def test_settings_are_checked_before_they_are_saved(studio_server, page, console_allow):
    console_allow.append('422')
    page.goto(studio_server.url + '#/settings')
    page.wait_for_selector('form.settings-form')
    assert page.is_disabled('[name=heartbeat_timeout_s]')          # the harness sets ODEO_HEARTBEAT_TIMEOUT_S
    page.fill('[name=comfyui_url]', 'ftp://comfy.example')
    page.click('form.settings-form button[type=submit]')
    page.wait_for_selector('.field.invalid [name=comfyui_url]')
    assert 'comfyui_url' in page.inner_text('form.settings-form p.error')
    assert not (studio_server.data_root / 'settings.toml').exists()
    page.click('text=Test connection')
    page.wait_for_selector('.comfy-test.error')
    page.fill('[name=comfyui_url]', 'http://127.0.0.1:9')
    page.fill('[name=retry_limit]', '4')
    page.click('form.settings-form button[type=submit]')
    page.wait_for_selector('.toast.ok')
    text = (studio_server.data_root / 'settings.toml').read_text()
    assert 'retry_limit = 4' in text and 'comfyui_url = "http://127.0.0.1:9"' in text
    page.goto(studio_server.url + '#/inference')
    page.wait_for_selector('.inf-comfy.down a[href="#/settings"]')
    assert 'not reachable at http://127.0.0.1:9' in page.inner_text('.inf-comfy')
