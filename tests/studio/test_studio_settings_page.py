"""The Settings page's API: editable settings checked before anything is written (422 naming the field), the
settings file rewritten atomically with its comments kept and read back by the next start, values in force at
once, a field an ODEO_* variable sets refused (409), and a ComfyUI URL tried without saving it."""

import os

from api.settings import load_settings
from tests.fakes.comfyui import FakeComfyUI

API = '/api/v1'


def test_a_change_is_checked_written_with_comments_and_in_force(make_app, data_root, tmp_path):
    path = data_root / 'settings.toml'
    path.write_text('# our studio\nretry_limit = 1   # crashes are rare here\nqueue_policy = "strict"\n')
    app = make_app()
    studio, c = app.extensions['odeo'], app.test_client()
    view = c.get(f'{API}/settings/editable').get_json()
    assert view['file'] == str(path) and view['editable']['retry_limit'] == studio.settings.retry_limit

    roots = tmp_path / 'more-models'
    roots.mkdir()
    for bad, field in (({'retry_limit': -1}, 'retry_limit'), ({'retry_limit': 2.5}, 'retry_limit'),
                       ({'heartbeat_timeout_s': 'soon'}, 'heartbeat_timeout_s'),
                       ({'comfyui_url': 'ftp://x'}, 'comfyui_url'), ({'comfyui_mode': 'remote'}, 'comfyui_mode'),
                       ({'model_roots': [str(tmp_path / 'nowhere')]}, 'model_roots'), ({'port': 1}, 'port'),
                       ({'gpu_memory_threshold_gib': True}, 'gpu_memory_threshold_gib')):
        r = c.patch(f'{API}/settings', json=bad)
        assert r.status_code == 422 and r.get_json()['error']['field'] == field, (bad, r.get_json())
    assert path.read_text().startswith('# our studio\nretry_limit = 1   # crashes are rare here')    # untouched

    r = c.patch(f'{API}/settings', json={'retry_limit': 5, 'heartbeat_timeout_s': 90, 'model_roots': [str(roots)],
                                        'comfyui_url': 'http://127.0.0.1:8190', 'gpu_memory_threshold_gib': 4.5})
    assert r.status_code == 200, r.get_json()
    text = path.read_text()
    assert '# our studio' in text and '# crashes are rare here' in text and 'retry_limit = 5' in text
    assert not [p for p in data_root.iterdir() if p.name.startswith('.settings.toml')]        # no temp file left
    assert studio.settings.retry_limit == 5 and studio.settings.heartbeat_timeout_s == 90.0  # in force now
    assert roots in studio.models.roots
    again = load_settings({'data_root': str(data_root)}, env={})
    assert (again.retry_limit, again.heartbeat_timeout_s, again.comfyui_url, again.gpu_memory_threshold_gib) == \
        (5, 90.0, 'http://127.0.0.1:8190', 4.5)
    assert again.model_roots == (str(roots),) and again.queue_policy == 'strict'


def test_a_setting_the_environment_sets_is_refused(make_app, monkeypatch):
    monkeypatch.setenv('ODEO_RETRY_LIMIT', '2')
    c = make_app().test_client()
    assert c.get(f'{API}/settings/editable').get_json()['locked'] == {'retry_limit': 'ODEO_RETRY_LIMIT'}
    r = c.patch(f'{API}/settings', json={'retry_limit': 4})
    assert r.status_code == 409 and 'ODEO_RETRY_LIMIT' in r.get_json()['error']['message']
    assert os.environ['ODEO_RETRY_LIMIT'] == '2'


def test_test_connection_tries_a_url_without_saving_it(make_app, data_root, tmp_path):
    fake = FakeComfyUI(tmp_path / 'comfy').start()
    try:
        c = make_app(comfyui_url='http://127.0.0.1:9').test_client()
        ok = c.post(f'{API}/settings/comfyui/test', json={'comfyui_url': fake.url}).get_json()
        assert ok['reachable'] is True and ok['url'] == fake.url
        assert c.get(f'{API}/settings/editable').get_json()['editable']['comfyui_url'] == 'http://127.0.0.1:9'
        assert not (data_root / 'settings.toml').exists()
        fake.stop()
        down = c.post(f'{API}/settings/comfyui/test', json={'comfyui_url': fake.url}).get_json()
        assert down['reachable'] is False and down['error']
        assert c.post(f'{API}/settings/comfyui/test', json={'comfyui_url': 'nope'}).status_code == 422
    finally:
        fake.stop()


def test_resource_samples_are_kept_in_a_ring_buffer():
    from api.services.jobs.gpus import GpuInventory
    from api.services.system.resources import ResourceSampler
    from tests.fakes.gpus import FakeGpus
    t = iter(range(100))
    sampler = ResourceSampler(GpuInventory(provider=FakeGpus(2), ttl=0), interval=5, keep=3, clock=lambda: next(t))
    first = sampler.history()
    assert first['stored'] == 'memory' and len(first['samples']) == 1
    for _ in range(4):
        sampler.sample()
    h = sampler.history()
    assert [s['t'] for s in h['samples']] == [2, 3, 4] and len(h['samples'][0]['gpus']) == 2
    assert {'utilization_pct', 'memory_used_gib', 'temperature_c'} <= set(h['samples'][0]['gpus'][0])
    assert h['samples'][0]['ram_total_gib'] > 0
    assert [s['t'] for s in sampler.history(after=3)['samples']] == [4]
    cpu = ResourceSampler(GpuInventory(backend='cpu'), keep=2).history()
    assert cpu['mode'] == 'cpu' and cpu['samples'][0]['gpus'] == [] and 'cpu_pct' in cpu['samples'][0]
