"""Settings: defaults, settings file, ODEO_* environment, flags; extra model roots."""

import pytest

from api.settings import Settings, SettingsError, load_settings
from tests.support.studio import copy_tiny_model


def test_defaults():
    s = load_settings(env={})
    assert (s.data_root, s.host, s.port, s.token) == ('./data', '127.0.0.1', 8080, '')
    assert s.launcher == 'deepspeed' and s.deepspeed_path.endswith('/deepspeed')


def test_file_then_env_then_flags(tmp_path):
    (tmp_path / 'settings.toml').write_text('port = 9000\ncpu_slots = 4\nretry_limit = 1\n')
    env = {'ODEO_DATA': str(tmp_path), 'ODEO_PORT': '9100', 'ODEO_GPU_MEMORY_THRESHOLD_GIB': '5.5',
           'ODEO_MODEL_ROOTS': '/data2/models:/data3/models', 'ODEO_PORT_RANGE': '30000-30100'}
    s = load_settings({'port': 9200}, env=env)
    assert s.data_root == str(tmp_path) and s.port == 9200 and s.cpu_slots == 4 and s.retry_limit == 1
    assert s.gpu_memory_threshold_gib == 5.5 and s.port_range == (30000, 30100)
    assert s.model_roots == ('/data2/models', '/data3/models')
    assert [str(r) for r in s.all_model_roots][1:] == ['/data2/models', '/data3/models']
    assert load_settings(env=env).port == 9100


def test_bad_values_name_the_setting(tmp_path):
    with pytest.raises(SettingsError, match='port'):
        load_settings(env={'ODEO_PORT': 'eighty'})
    with pytest.raises(SettingsError, match='queue_policy'):
        load_settings({'queue_policy': 'random'}, env={})
    (tmp_path / 'settings.toml').write_text('colour = "blue"\n')
    with pytest.raises(SettingsError, match='colour'):
        load_settings(env={'ODEO_DATA': str(tmp_path)})
    with pytest.raises(SettingsError, match='unknown setting'):
        load_settings({'nope': 1}, env={})


def test_every_setting_has_a_comment():
    import inspect
    import api.settings
    source = inspect.getsource(api.settings.Settings)
    for name in Settings.__dataclass_fields__:
        line = next(line for line in source.splitlines() if line.strip().startswith(f'{name}:'))
        assert '#' in line, f'{name} has no comment'


def test_extra_model_roots_are_scanned(make_app, tmp_path, tiny_models):
    extra = tmp_path / 'data2' / 'models'
    copy_tiny_model(tiny_models, extra / 'wan-1.3b')
    models = make_app(model_roots=(str(extra),)).test_client().get('/api/v1/models').get_json()
    assert [m['path'] for m in models['models']] == [str(extra / 'wan-1.3b')]
    assert models['roots'][1] == str(extra)
