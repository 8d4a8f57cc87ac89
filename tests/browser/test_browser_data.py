"""The Data area in a real Chromium against a real studio process with the demo dataset: upload a clip
through the page, see its thumbnail, edit its caption, see the bucket view, preview a bulk caption edit,
open the import tab; screenshots go to test-artifacts/screenshots/data-area.png and data-buckets.png.

Chromium is Debian's /usr/bin/chromium driven by Playwright's Python API (never `playwright install`).
Without it the test is skipped, unless ODEO_REQUIRE_BROWSER=1 (CI), where that is a failure. The page
fails the test on any console error and on any request that leaves the loopback address."""

import pytest

from tests.support import mediagen

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def viewport():
    return {'width': 1400, 'height': 1000}


def test_upload_thumbnail_caption_and_buckets(studio_server, page, shot, tmp_path):
    data_root = studio_server.data_root
    page.goto(studio_server.url + '#/data')
    page.wait_for_selector('tr[data-dataset="demo"]')
    assert page.inner_text('tr[data-dataset="demo"]').split('\t')[1:3] == ['8', '4']

    page.click('tr[data-dataset="demo"] a')
    page.wait_for_selector('.clip-card[data-file="clip_00.mp4"]')
    page.wait_for_function('() => document.querySelectorAll(".clip-card img").length == 12')
    page.wait_for_function('() => [...document.querySelectorAll(".clip-card img")].every(i => i.complete && i.naturalWidth > 0)')
    assert page.inner_text('.clip-card[data-file="clip_00.mp4"] .badge.bucket') == '96x48x17'

    clip = mediagen.video(tmp_path / 'my beach.mp4', 80, 48, 16, 36)
    page.set_input_files('section.upload input[type=file]', str(clip))
    page.wait_for_selector('.upload-row.ok', timeout=20000)
    assert 'added as my beach.mp4' in page.inner_text('.upload-row.ok')
    card = '.clip-card[data-file="my beach.mp4"]'
    page.wait_for_selector(card)
    page.wait_for_function(f'() => (() => {{ const i = document.querySelector(\'{card} img\'); return i.complete && i.naturalWidth > 0; }})()')
    assert (data_root / 'datasets' / 'demo' / 'my beach.mp4').read_bytes() == clip.read_bytes()
    assert page.inner_text(f'{card} .badge.dropped') == 'dropped' and 'no caption' in page.inner_text(f'{card} .reason')

    page.click(card)
    page.wait_for_selector('.clip-panel video.player')
    page.wait_for_function('() => document.querySelector(".clip-panel img.strip").naturalWidth > 0')
    assert '80×48 · 2.25 s · 16 fps · 36 frames' in page.inner_text('.clip-info')
    page.fill('.caption-edit', 'waves roll onto a sandy beach at dusk')
    page.click('.caption-box button.primary')
    page.wait_for_function(f'() => document.querySelector(\'{card} .caption\').textContent.includes("waves roll")')
    assert (data_root / 'datasets' / 'demo' / 'my beach.txt').read_text() == 'waves roll onto a sandy beach at dusk\n'
    page.wait_for_selector(f'{card} .badge.bucket')
    assert page.inner_text(f'{card} .badge.bucket') == '96x48x17'      # 80x48: the 2:1 bucket; 36 frames: 17
    shot('data-area')

    page.click('.tabs button[data-tab="buckets"]')
    page.wait_for_selector('.buckets-table tbody tr')
    summary = page.inner_text('.bucket-summary')
    assert summary.startswith('13 step(s) per epoch') and '13 file(s): 13 train, 0 dropped' in summary
    labels = page.eval_on_selector_all('.buckets-table tbody tr td:first-child', 'els => els.map(e => e.textContent)')
    assert '96x48x17' in labels and '64x64x1' in labels
    page.fill('.bucket-form input[aria-label="Frame buckets"]', '1, 33')
    page.wait_for_function('() => document.querySelector(".bucket-summary")?.textContent.includes("10 train, 3 dropped")')
    assert 'too short' in page.inner_text('.dropped-files')
    shot('data-buckets')

    page.click('.tabs button[data-tab="captions"]')
    page.fill('.bulk input[aria-label="Text to add"]', 'sks, ')
    page.click('.bulk button:has-text("Preview")')
    page.wait_for_selector('.bulk-count')
    assert page.inner_text('.bulk-count').startswith('13 caption(s) would change')
    page.wait_for_selector('.autocaption textarea')
    assert page.input_value('.autocaption textarea').startswith('Describe this {kind}')
    assert (data_root / 'datasets' / 'demo' / 'my beach.txt').read_text().startswith('waves')   # preview wrote nothing
    page.click('.tabs button[data-tab="import"]')
    page.wait_for_selector('form.import')
    assert str(data_root / 'imports') in page.inner_text('form.import')
