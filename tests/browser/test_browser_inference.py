"""The Inference area in a real Chromium: the comparison grid of a task trained for two epochs (with its
previews and a base-model run) plays all its videos in sync under one control, scrubs them together, shows
a cell's settings, downloads a video, and marks the best epoch, which then comes first. Screenshots go to
test-artifacts/screenshots/.

Browser: Debian's /usr/bin/chromium through Playwright's Python API (never `playwright install`); skipped
when it is missing, unless ODEO_REQUIRE_BROWSER=1. The page fails the test on console errors and on any
request that leaves the loopback address."""

import re
import time
from pathlib import Path

import pytest

from tests.support.inference import read_video

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def viewport():
    return {'width': 1400, 'height': 950}


def video_states(pg):
    return pg.evaluate("""() => [...document.querySelectorAll('table.inf-grid video')].map(
        v => ({t: v.currentTime, paused: v.paused, d: v.duration, ready: v.readyState}))""")


def spread(states):
    """Largest distance between two videos' positions on the looping timeline."""
    d = max(s['d'] for s in states)
    ts = [s['t'] for s in states]
    return max(min(abs(a - b), d - abs(a - b)) for a in ts for b in ts)


def test_the_grid_plays_in_sync_shows_settings_downloads_and_marks_the_best(preview_studio, page, shot, tmp_path):
    studio, task = preview_studio['studio'], preview_studio['task']
    base = studio.base.replace('/api/v1', '')
    page.goto(f'{base}/#/inference/{task["id"]}')
    page.wait_for_selector('table.inf-grid video')
    rows = page.eval_on_selector_all('table.inf-grid tbody tr', 'rs => rs.map(r => r.dataset.row)')
    labels = page.eval_on_selector_all('table.inf-grid th.inf-row > div:first-child', 'es => es.map(e => e.textContent)')
    assert labels == ['base model', 'epoch 1', 'epoch 2'] and rows[0] == 'base'
    page.wait_for_function("() => [...document.querySelectorAll('table.inf-grid video')].every(v => v.readyState >= 2)")
    assert page.evaluate("() => document.createElement('video').canPlayType('video/mp4; codecs=\"avc1.64000d\"')")
    shot('inference-grid')

    page.click('#inf-play')
    time.sleep(0.6)
    samples = []
    for _ in range(6):
        states = video_states(page)
        assert len(states) == 3 and not any(s['paused'] for s in states), states
        samples.append(spread(states))
        time.sleep(0.15)
    assert sorted(samples)[len(samples) // 2] < 0.12, samples          # one clock for every video
    assert len({round(s['t'], 2) for s in video_states(page)}) <= 3
    shot('inference-grid-playing')
    page.click('#inf-play')
    states = video_states(page)
    assert all(s['paused'] for s in states) and spread(states) < 0.05
    page.eval_on_selector('#inf-scrub', "(el) => { el.value = 0.5; el.dispatchEvent(new Event('input')); }")
    page.wait_for_function("() => [...document.querySelectorAll('table.inf-grid video')]"
                           ".every(v => Math.abs(v.currentTime - 0.5) < 0.02)")

    title = page.get_attribute('tr[data-row$="/epoch2"] td.inf-cell', 'title')
    assert 'seed 11, 4 steps' in title and '64×48, 13 frames at 16 fps' in title
    page.click('tr[data-row$="/epoch2"] td.inf-cell button:has-text("Details")')
    details = page.inner_text('aside.inf-details')
    assert 'a red fox running through fresh snow' in details and re.search(r'Seed\s+11\b', details)
    shot('inference-cell-details')
    page.click('aside.inf-details button:has-text("Close")')

    with page.expect_download() as got:
        page.click('tr[data-row$="/epoch2"] a.inf-download')
    download = got.value
    assert download.suggested_filename.startswith('fox_epoch-2_s1_seed11_') and download.suggested_filename.endswith('.mp4')
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    frames, rate, codec = read_video(saved)
    assert frames.shape == (13, 48, 64, 3) and codec == 'h264'

    page.click('tr[data-row$="/epoch2"] button:has-text("Mark best")')
    page.wait_for_selector('table.inf-grid tbody tr.best')
    labels = page.eval_on_selector_all('table.inf-grid th.inf-row > div:first-child', 'es => es.map(e => e.textContent)')
    assert labels == ['★ epoch 2', 'base model', 'epoch 1']               # the best epoch comes first
    assert studio.call('GET', f'/tasks/{task["id"]}')[1]['best_lora']['lora'] == 'epoch2'
    shot('inference-grid-best')


def test_the_test_run_form_and_the_gallery(preview_studio, page, shot):
    studio, task = preview_studio['studio'], preview_studio['task']
    base = studio.base.replace('/api/v1', '')
    page.goto(f'{base}/#/inference/{task["id"]}?tab=run')
    page.wait_for_selector('form.inf-run')
    labels = page.eval_on_selector_all('label.inf-lora', 'ls => ls.map(l => l.textContent.replace("★ ", ""))')
    assert labels == ['epoch 1', 'epoch 2']
    page.fill('input[name=frames]', '10')
    assert 'not 4n+1' in page.inner_text('form.inf-run p.error')
    page.fill('input[name=frames]', '9')
    page.check('input[name=base]')
    page.check('input[name=lora][value$="/epoch1"]')
    assert page.inner_text('form.inf-run .row .muted') == '3 videos'
    shot('inference-run-form')

    page.goto(f'{base}/#/inference?tab=gallery')
    page.wait_for_selector('.inf-gallery')
    page.fill('input[aria-label="New folder name"]', 'portraits')
    page.click('.inf-gallery form button[type=submit]')
    page.wait_for_selector('li[data-folder="portraits"].active')
    from PIL import Image
    image = Path(preview_studio['data_root']).parent / 'wide.png'
    Image.new('RGB', (1920, 1080), (30, 120, 200)).save(image)
    page.set_input_files('input[aria-label="Upload images"]', str(image))
    page.wait_for_selector('figure.inf-thumb[data-path="portraits/wide.png"]')
    caption = page.inner_text('figure.inf-thumb[data-path="portraits/wide.png"] figcaption')
    assert '1920×1080' in caption and '480p: 848×480' in caption
    shot('inference-gallery')
