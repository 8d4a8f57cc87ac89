"""The bucket view is the trainer's own dataset report: it agrees with `train.py --dump_dataset` on the
same folder and settings; suggestions come from the data; dataset.toml is validated before it is
written, and a new training task on the dataset starts from it."""

import json
import subprocess
import sys

import pytest

from tests.support import mediagen
from tests.support.data import API
from tests.support.studio import REPO
from tests.support.trainer import config_text, trainer_env, write_config
from utils.config import load_dataset_config

SETTINGS = {'resolutions': [32, 64], 'frame_buckets': [1, 9, 17], 'num_ar_buckets': 3, 'num_repeats': 2}


def mixed_dataset(folder):
    folder.mkdir(parents=True)
    for name, w, h, frames in [('a', 64, 48, 24), ('b', 48, 64, 40), ('c', 96, 48, 12), ('d', 64, 64, 20),
                               ('short', 64, 48, 3), ('nocap', 64, 48, 20)]:
        mediagen.video(folder / f'{name}.mp4', w, h, 16, frames)
        if name != 'nocap':
            mediagen.caption(folder / f'{name}.mp4', f'clip {name}')
    mediagen.image(folder / 'still.png', 64, 64)
    mediagen.caption(folder / 'still.png', 'a still')
    mediagen.image(folder / 'tiny.png', 8, 8)
    mediagen.caption(folder / 'tiny.png', 'too small to train')
    (folder / 'broken.mp4').write_text('not a video')
    mediagen.caption(folder / 'broken.mp4', 'broken')
    return folder


@pytest.mark.slow
def test_bucket_view_agrees_with_train_py_dump_dataset(make_app, data_root, tiny_model, tmp_path):
    folder = mixed_dataset(data_root / 'datasets' / 'mix')
    c = make_app().test_client()
    r = c.put(f'{API}/datasets/mix/config', json={'settings': SETTINGS, 'variant': 'wan2.1-t2v-1.3b'})
    assert r.status_code == 200, r.get_json()
    options = {'variant': 'wan2.1-t2v-1.3b', 'micro_batch_size': 1, 'gpus': 2, 'gradient_accumulation_steps': 1}
    view = c.get(f'{API}/datasets/mix/buckets', query_string=options).get_json()
    assert view['has_config'] and not view['issues']

    cfg = write_config(tmp_path, config_text(tiny_model, folder / 'dataset.toml', tmp_path / 'out',
                                             micro_batch_size_per_gpu=1, gradient_accumulation_steps=1))
    run = tmp_path / 'run'
    env = dict(trainer_env(), WORLD_SIZE='2')
    proc = subprocess.run([sys.executable, 'train.py', '--config', str(cfg), '--dump_dataset', '--run_dir', str(run)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((run / 'dataset_report.json').read_text())

    trainer_files = {f['name']: (f['status'], f['reason'], ['x'.join(map(str, b['bucket'])) for b in f['buckets']])
                     for f in report['files']}
    studio_files = {f['name']: (f['status'], f['reason'], f['buckets']) for f in view['files']}
    assert studio_files == trainer_files
    assert [(b['label'], b['items'], b['items_per_epoch'], b['files']) for b in view['buckets']] == \
           [(b['label'], b['items'], b['items_per_epoch'], b['files']) for b in report['buckets']]
    assert view['steps_per_epoch'] == report['batching']['steps'] > 0
    assert view['dropped_per_epoch'] == report['batching']['dropped_per_epoch']
    assert view['totals'] == report['totals']
    assert f"Steps per epoch: {view['steps_per_epoch']} " in proc.stdout
    # what a person sees, spelled out
    assert studio_files['short.mp4'][1] == 'too short: 3 frames at 16 fps, smallest frame bucket is 9'
    assert studio_files['nocap.mp4'][1] == 'no caption'
    assert studio_files['broken.mp4'][1].startswith('unreadable: not a video')
    assert studio_files['c.mp4'] == ('used', None, ['48x16x9', '96x48x9'])     # 2:1, 12 frames -> 9

    grid = {f['name']: f for f in c.get(f'{API}/datasets/mix/files').get_json()['files']}
    assert grid['short.mp4']['status'] == 'dropped' and grid['a.mp4']['buckets'] == studio_files['a.mp4'][2]

    task = c.post(f'{API}/tasks', json={'dataset': 'mix'}).get_json()
    assert task['form']['dataset'] == 'mix'
    assert task['form']['resolutions'] == [32, 64] and task['form']['frame_buckets'] == [1, 9, 17]


def test_suggestions_follow_the_data(make_app, data_root):
    folder = data_root / 'datasets' / 's'
    folder.mkdir(parents=True)
    for i, (w, h, frames) in enumerate([(64, 36, 40), (96, 54, 60), (64, 36, 90), (48, 64, 33), (36, 64, 120)]):
        mediagen.video(folder / f'v{i}.mp4', w, h, 16, frames)
        mediagen.caption(folder / f'v{i}.mp4', 'x')
    mediagen.image(folder / 'i.png', 64, 64)
    mediagen.caption(folder / 'i.png', 'x')
    c = make_app().test_client()
    s = c.get(f'{API}/datasets/s/buckets').get_json()['suggestions']
    assert s['ar_buckets'] == [0.562, 0.75, 1.0, 1.778]              # clusters: 9:16, 3:4, 1:1, 16:9 (x3)
    assert (s['min_ar'], s['max_ar']) == (0.562, 1.778)
    assert s['frame_buckets'] == [1, 33, 57, 81]                       # shortest, median, 90th pct (capped at 5 s), images
    assert all((f - 1) % 4 == 0 for f in s['frame_buckets'])
    view = c.post(f'{API}/datasets/s/buckets', json={'settings': {'resolutions': [64], 'ar_buckets': s['ar_buckets'],
                                                                   'frame_buckets': s['frame_buckets']}}).get_json()
    assert view['totals']['dropped'] == 0 and view['totals']['used'] == 6


def test_dataset_toml_is_validated_before_it_is_written(make_app, data_root):
    folder = data_root / 'datasets' / 'v'
    folder.mkdir(parents=True)
    c = make_app().test_client()
    r = c.put(f'{API}/datasets/v/config', json={'settings': {'resolutions': [60], 'frame_buckets': [1, 10], 'colour': 1}})
    assert r.status_code == 400 and 'colour' in r.get_json()['error']['message']
    r = c.put(f'{API}/datasets/v/config', json={'settings': {'resolutions': [60], 'frame_buckets': [1, 10]}})
    assert r.status_code == 422
    issues = {i['key']: i['message'] for i in r.get_json()['error']['issues']}
    assert set(issues) == {'resolutions', 'frame_buckets'} and '4n+1' in issues['frame_buckets']
    assert not (folder / 'dataset.toml').exists()
    r = c.put(f'{API}/datasets/v/config', json={'settings': {'resolutions': [64]}, 'variant': 'wan2.2-ti2v-5b'})
    assert r.status_code == 200
    cfg = load_dataset_config(folder / 'dataset.toml', size_multiple=32)
    assert cfg['resolutions'] == [64] and cfg['directory'][0]['path'] == str(folder)
    view = c.post(f'{API}/datasets/v/buckets', json={'settings': {'resolutions': [48]},
                                                     'options': {'variant': 'wan2.2-ti2v-5b'}}).get_json()
    assert view['issues'][0]['key'] == 'resolutions' and 'multiple of 32' in view['issues'][0]['message']
    assert c.get(f'{API}/datasets/v/config').get_json()['settings']['resolutions'] == [64]
    r = c.post(f'{API}/datasets/v/buckets', json={'options': {'variant': 'wan9'}})
    assert r.status_code == 400 and r.get_json()['error']['field'] == 'variant'


def test_the_view_says_how_much_each_file_is_upscaled(make_app, data_root):
    folder = data_root / 'datasets' / 'up'
    folder.mkdir(parents=True)
    mediagen.image(folder / 'small.png', 320, 240)
    mediagen.image(folder / 'large.png', 1280, 960)
    for name in ('small.png', 'large.png'):
        mediagen.caption(folder / name, 'x')
    c = make_app().test_client()
    view = c.post(f'{API}/datasets/up/buckets', json={'settings': {'resolutions': [512], 'frame_buckets': [1],
                                                                    'ar_buckets': [1.25]}}).get_json()
    files = {f['name']: f for f in view['files']}
    assert files['small.png']['buckets'] == ['576x464x1']                # 512x512 area at 1.25, sides /16
    assert files['small.png']['scale'] == round(max(576 / 320, 464 / 240), 3) == 1.933
    assert files['small.png']['bucket_scales'] == {'576x464x1': 1.933}
    assert files['large.png']['scale'] == round(max(576 / 1280, 464 / 960), 3) < 1
