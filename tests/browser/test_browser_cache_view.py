"""'What the cache holds' in a real Chromium: the Buckets tab lists the clips cached for the variant and
decodes one back to a playing video with the tiny TAEHV, at its bucket's size."""

import pytest
import torch

from models.taehv.model import write_tiny_taehv
from utils.cache import Store

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_a_cached_clip_is_decoded_in_the_buckets_tab(studio_server, page, shot):
    demo = studio_server.data_root / 'datasets' / 'demo'
    write_tiny_taehv(studio_server.data_root / 'models' / 'tiny')
    Store(demo / 'cache' / 'wan2.1-t2v-1.3b').commit(
        {'lclip': ({'kind': 'latent', 'item': '0f1e2d3c4b5a69788796', 'source': str(demo / 'clip_00.mp4')},
                   {'latents': torch.randn(16, 5, 6, 12)})}, rank=0)          # a 96x48x17 bucket
    page.goto(studio_server.url + '#/data/demo?tab=buckets')
    row = '.cache-view tr[data-item="0f1e2d3c4b5a69788796"]'
    page.wait_for_selector(row)
    assert page.inner_text(f'{row} td.num') == '96×48×17'
    page.click(f'{row} button:has-text("Decode")')
    page.wait_for_function(f'() => {{ const v = document.querySelector(\'{row} video\'); '
                           'return v && v.readyState >= 2 && v.videoWidth === 96 && v.videoHeight === 48; }',
                           timeout=30_000)
    assert page.evaluate(f'() => document.querySelector(\'{row} video\').duration') == pytest.approx(17 / 16, abs=0.1)
    shot('data-cache-view')
