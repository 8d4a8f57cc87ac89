"""Browser-test harness: a real studio process and a real Chromium driven by Playwright.

Fixtures (a plugin of tests/conftest.py, so every test module can ask for them):

    studio_server           a studio (`python -m api --port <free> --data <tmp>`) on the CPU, with the tiny
                            demo model in <data>/models/tiny and the demo dataset in <data>/datasets/demo;
                            .url, .api(method, path, body) -> (status, json), .data_root; stopped afterwards
    start_studio            start_studio(env=None, **settings) -> another studio with settings overrides
                            (ODEO_<NAME> environment) and extra environment, e.g. start_studio(queue_policy='backfill')
    page                    a Chromium page (`viewport`: 1280x800 unless a module overrides that fixture);
                            the test fails on any console error, uncaught page error, or request to a
                            host other than this machine
    console_allow           list of regexes: console errors matching one are allowed (e.g. an expected 422)
    shot                    shot(name, page=None) saves test-artifacts/screenshots/<name>.png (full page)

Chromium is Debian's /usr/bin/chromium (or $ODEO_CHROMIUM); nothing is downloaded. When it is missing the
tests are skipped, unless ODEO_REQUIRE_BROWSER=1 (CI), which makes that a failure. Mark browser tests
with @pytest.mark.browser.

    pytestmark = pytest.mark.browser

    def test_something(studio_server, page, shot):
        page.goto(studio_server.url + '#/gpus')
        page.get_by_text('No GPU').wait_for()
        shot('gpus')
"""

import os
import re
import shutil
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest

from tests.support.studio import REPO, StudioProcess, free_port, kill_jobs, wait_until

CHROMIUM = os.environ.get('ODEO_CHROMIUM', '/usr/bin/chromium')
CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
                 '--no-first-run']
VIEWPORT = {'width': 1280, 'height': 800}
SCREENSHOTS = REPO / 'test-artifacts' / 'screenshots'
LOCAL_HOSTS = {'127.0.0.1', 'localhost', '::1', '[::1]'}
DEMO_VARIANT = 'wan2.1-t2v-1.3b'

# What every browser-test studio runs with: CPU slots instead of GPUs, the real trainer, quick ticks.
STUDIO_SETTINGS = {
    'gpu_backend': 'cpu',
    'cpu_slots': 1,
    'scheduler_interval_s': 0.25,
    'heartbeat_timeout_s': 120,
    'stop_grace_s': 30,
    'kill_grace_s': 5,
    'gpu_cache_s': 0,
}


class Studio(StudioProcess):
    """A `python -m api --port <free> --data <root>` process with the harness' settings (not the fake trainer's)."""

    def __init__(self, data_root: Path, env=None, **settings):
        super().__init__(Path(data_root), free_port(), **{**STUDIO_SETTINGS, **settings})
        self.url = f'http://127.0.0.1:{self.port}/'
        self.env = dict(env or {})

    def start(self, timeout=30.0):
        env = {k: v for k, v in os.environ.items() if not k.startswith('ODEO_')}
        env.update({f'ODEO_{k.upper()}': str(v) for k, v in self.settings.items()})
        env.setdefault('TORCH_EXTENSIONS_DIR', str(REPO / 'build' / 'torch_extensions'))
        env.update({'HF_HUB_OFFLINE': '1', **self.env})
        log = Path(self.data_root).parent / f'studio-{self.port}.log'
        with open(log, 'ab') as out:
            self.proc = subprocess.Popen([sys.executable, '-m', 'api', '--port', str(self.port), '--data', str(self.data_root)],
                                         cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        wait_until(self.ready, timeout, every=0.1, what=f'the studio on port {self.port} (its output: {log})')
        return self

    def api(self, method, path, body=None, timeout=30.0):
        """(status, JSON body) of a call to /api/v1/<path>."""
        return self.call(method, f'/{path}', body, timeout)

    def stop(self):
        try:
            self.terminate()
        except subprocess.TimeoutExpired:
            self.kill()
        kill_jobs(self.data_root)


@pytest.fixture(scope='session')
def demo_inputs(tmp_path_factory):
    """The tiny demo model (one variant, official layout) and the demo dataset, made once per session."""
    from models.wan.tiny import write_tiny_model
    root = tmp_path_factory.mktemp('demo_inputs')
    write_tiny_model(root / 'models' / 'tiny', DEMO_VARIANT, ('official',))
    subprocess.run([sys.executable, 'tools/make_demo_dataset.py', '--out', str(root / 'datasets' / 'demo')],
                   cwd=REPO, check=True, capture_output=True)
    return root


@pytest.fixture
def start_studio(tmp_path, demo_inputs):
    """start_studio(env=None, **settings) -> a running Studio on a fresh data root with the demo model and dataset."""
    started = []

    def start(env=None, **settings):
        data_root = tmp_path / f'data{len(started)}'
        shutil.copytree(demo_inputs / 'models', data_root / 'models')
        shutil.copytree(demo_inputs / 'datasets', data_root / 'datasets')
        studio = Studio(data_root, env=env, **settings)
        started.append(studio)
        return studio.start()

    yield start
    for studio in started:
        studio.stop()


@pytest.fixture
def studio_server(start_studio):
    return start_studio()


def _chromium_or_skip():
    if Path(CHROMIUM).exists():
        return CHROMIUM
    reason = f'Chromium not found at {CHROMIUM} (install Debian\'s chromium package; nothing is downloaded)'
    if os.environ.get('ODEO_REQUIRE_BROWSER') == '1':
        pytest.fail(f'{reason}; ODEO_REQUIRE_BROWSER=1 makes this a failure')
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def browser_available(request):
    """Tests marked `browser` are skipped (or, under ODEO_REQUIRE_BROWSER=1, fail) before any studio starts."""
    if request.node.get_closest_marker('browser'):
        _chromium_or_skip()


@pytest.fixture(scope='session')
def chromium():
    path = _chromium_or_skip()
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def console_allow():
    """Regexes of console errors a test expects (say, the 422 of a refused start); others fail the test."""
    return []


@pytest.fixture
def viewport():
    """The page size; a test module that wants another one defines its own `viewport` fixture."""
    return VIEWPORT


@pytest.fixture
def page(chromium, console_allow, viewport):
    context = chromium.new_context(viewport=viewport, accept_downloads=True)
    context.set_default_timeout(15000)
    problems = []

    def outside(route):
        host = urllib.parse.urlsplit(route.request.url).hostname or ''
        if host in LOCAL_HOSTS or route.request.url.startswith(('data:', 'blob:')):
            return route.continue_()
        problems.append(f'request to another host: {route.request.method} {route.request.url}')
        return route.abort()

    def console(msg):
        if msg.type == 'error' and not any(re.search(p, msg.text) for p in console_allow):
            problems.append(f'console error: {msg.text} ({msg.location.get("url", "")})')

    context.route('**/*', outside)
    pg = context.new_page()
    pg.on('console', console)
    pg.on('pageerror', lambda err: problems.append(f'uncaught error in the page: {err}'))
    yield pg
    context.close()
    if problems:
        pytest.fail('the page misbehaved:\n  ' + '\n  '.join(problems))


@pytest.fixture
def shot(request):
    """shot(name, page=None): a full-page screenshot in test-artifacts/screenshots/<name>.png; returns the path."""
    def take(name, pg=None):
        pg = pg or request.getfixturevalue('page')
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f'{re.sub(r"[^A-Za-z0-9_.-]", "_", name)}.png'
        pg.screenshot(path=str(path), full_page=True)
        return path
    return take
