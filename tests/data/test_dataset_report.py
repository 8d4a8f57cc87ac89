"""Caption sources and precedence, caption variants, the report's counts and steps, and batching."""

import json
import os
import subprocess
import sys

import pytest

from tests.support.mediagen import caption, image, video
from utils.config import validate_dataset
from utils.dataset import (MediaSpec, build_dataset, epoch_batches, format_report, micro_batch_size_fn,
                           steps_per_epoch)

SPEC = MediaSpec(framerate=16, size_multiple=16)


def config(tmp, directories, **top):
    raw = {'resolutions': [32], 'frame_buckets': [1, 17], 'enable_ar_bucket': True, **top, 'directory': directories}
    cfg, issues = validate_dataset(raw, str(tmp / 'dataset.toml'))
    assert not issues, issues
    return cfg


def captions_of(ds):
    return {os.path.basename(it.path): it.captions for it in ds.items}


@pytest.fixture
def captioned(tmp_path):
    d = tmp_path / 'captioned'
    (d / 'sub').mkdir(parents=True)
    for name in ('a', 'b'):
        video(d / f'{name}.mp4', 48, 32, frames=20)
        caption(d / f'{name}.mp4', f'sidecar {name}')
    for name in ('c', 'd', 'sub/e'):
        image(d / f'{name}.png', 48, 32)
    caption(d / 'c.png', 'sidecar c')
    caption(d / 'd.png', 'sidecar d')
    (d / 'captions.json').write_text(json.dumps({'a.mp4': 'json a', 'b.mp4': ['json b1', 'json b2'], 'c.png': 'json c'}))
    (d / 'metadata.csv').write_text(
        'video,image,prompt\n'
        'a.mp4,,"meta a, with a comma\nand a newline"\n'
        ',d.png,meta d1\n'
        ',d.png,"meta ""d2"""\n'
        ',sub/e.png,meta e\n'
        'missing.mp4,,gone\n', encoding='utf-8')
    return d


def test_caption_precedence_metadata_then_captions_json_then_sidecar(captioned, tmp_path):
    ds = build_dataset(config(tmp_path, [{'path': str(captioned)}]), SPEC)
    caps = captions_of(ds)
    assert caps['a.mp4'] == ['meta a, with a comma and a newline']      # metadata.csv beats captions.json and a.txt;
    #                                                                     whitespace cleaned as the encoder sees it
    assert caps['b.mp4'] == ['json b1', 'json b2']                      # captions.json beats b.txt; lists allowed
    assert caps['c.png'] == ['json c']
    assert caps['d.png'] == ['meta d1', 'meta "d2"']                    # two rows: two captions
    assert caps['e.png'] == ['meta e']                                  # a sub-folder file named by the metadata
    files = {f['name']: f for f in ds.report['files']}
    assert [files[n]['caption_source'] for n in ('a.mp4', 'b.mp4', 'c.png', 'sub/e.png')] == \
        ['metadata.csv', 'captions.json', 'captions.json', 'metadata.csv']
    assert 'listed in metadata.csv row 5' in files['sub/e.png']['notes']
    assert any(p.endswith("metadata.csv row 6: 'missing.mp4' not found") for p in ds.report['problems'])
    # without the tables, the sidecars are used
    os.unlink(captioned / 'metadata.csv')
    os.unlink(captioned / 'captions.json')
    caps = captions_of(build_dataset(config(tmp_path, [{'path': str(captioned)}]), SPEC))
    assert caps == {'a.mp4': ['sidecar a'], 'b.mp4': ['sidecar b'], 'c.png': ['sidecar c'], 'd.png': ['sidecar d']}


def test_explicit_metadata_file_replaces_the_folder_default(captioned, tmp_path):
    other = tmp_path / 'other.json'
    other.write_text(json.dumps([{'image': 'c.png', 'prompt': 'from other.json'}]))
    ds = build_dataset(config(tmp_path, [{'path': str(captioned), 'metadata_file': str(other)}]), SPEC)
    caps = captions_of(ds)
    assert caps['c.png'] == ['from other.json']
    assert caps['a.mp4'] == ['json a']                                  # metadata.csv is not read now
    assert 'e.png' not in caps                                          # nor are its sub-folder files


def test_caption_prefix_shuffle_and_empty_captions(tmp_path):
    d = tmp_path / 'tags'
    d.mkdir()
    caption(image(d / 'a.png', 48, 32), 'red, round, small, shiny')
    image(d / 'b.png', 48, 32)
    top = {'caption_prefix': 'style: ', 'cache_shuffle_num': 3}
    ds = build_dataset(config(tmp_path, [{'path': str(d)}], **top), SPEC, seed=3)
    variants = captions_of(ds)['a.png']
    assert len(variants) == 3
    for v in variants:
        assert v.startswith('style: ')
        assert sorted(v[len('style: '):].split(', ')) == ['red', 'round', 'shiny', 'small']
    assert captions_of(build_dataset(config(tmp_path, [{'path': str(d)}], **top), SPEC, seed=3))['a.png'] == variants
    files = {f['name']: f for f in ds.report['files']}
    assert files['b.png']['reason'] == 'no caption'
    # shuffle_tags alone gives one shuffled variant; skip_empty_caption = false keeps b with ''
    ds = build_dataset(config(tmp_path, [{'path': str(d)}], shuffle_tags=True, skip_empty_caption=False), SPEC)
    caps = captions_of(ds)
    assert len(caps['a.png']) == 1 and sorted(caps['a.png'][0].split(', ')) == ['red', 'round', 'shiny', 'small']
    assert caps['b.png'] == ['']
    assert any('trained with an empty caption' in n for f in ds.report['files'] if f['name'] == 'b.png' for n in f['notes'])


def test_caption_dropout_is_an_exact_seeded_fraction(tmp_path):
    d = tmp_path / 'drop'
    d.mkdir()
    for i in range(4):
        caption(image(d / f'{i}.png', 48, 32), f'caption {i}')
    cfg = config(tmp_path, [{'path': str(d), 'caption_dropout': 0.5}])
    ds = build_dataset(cfg, SPEC, seed=7)
    dropped = sorted(n for n, c in captions_of(ds).items() if c == [''])
    assert len(dropped) == 2 and ds.report['totals']['caption_dropout_files'] == 2
    assert sorted(n for n, c in captions_of(build_dataset(cfg, SPEC, seed=7)).items() if c == ['']) == dropped
    kept = [c for n, c in captions_of(ds).items() if n not in dropped]
    assert all(c[0].startswith('caption ') for c in kept)


@pytest.fixture
def two_dirs(tmp_path):
    a, b = tmp_path / 'a', tmp_path / 'b'
    a.mkdir()
    b.mkdir()
    for i in range(3):
        caption(video(a / f'v{i}.mp4', 48, 32, fps=16, frames=20), f'video {i}')
    for i in range(2):
        caption(image(a / f'i{i}.png', 48, 32), f'image {i}')
    caption(image(b / 'sq.png', 64, 64), 'square')
    return config(tmp_path, [{'path': str(a), 'num_repeats': 2}, {'path': str(b), 'resolutions': [64]}])


def test_report_counts_and_steps_per_epoch(two_dirs):
    ds = build_dataset(two_dirs, SPEC)
    buckets = {tuple(b['bucket']): (b['items'], b['items_per_epoch'], b['files']) for b in ds.report['buckets']}
    # 48x32 (AR 1.5) -> nearest bucket 1.587 -> 1024 px area -> 40.3 x 25.4 -> 48 x 32
    assert buckets == {(48, 32, 1): (2, 4, 2), (48, 32, 17): (3, 6, 3), (64, 64, 1): (1, 1, 1)}
    assert ds.report['totals'] == {'files': 6, 'used': 6, 'dropped': 0, 'ignored': 0, 'items': 6,
                                   'items_per_epoch': 11, 'caption_dropout_files': 0, 'split_off': 0}
    # micro 1 (images 2), 2 data-parallel ranks: video 6/2 = 3 steps; images 4/4 = 1; 64x64 1 < 4 -> 0, 1 left
    assert ds.steps_per_epoch(1, 2, dp_world=2, grad_accum=1) == 4
    assert ds.report['batching']['dropped_per_epoch'] == 1
    # per-resolution micro batch: 48x32 (side 39.2) -> entry 32 -> 3; global 3 * 2 accumulation = 6
    got = steps_per_epoch(json.loads(json.dumps(ds.report)), [[32, 3], [64, 1]], None, dp_world=1, grad_accum=2)
    assert [(r['label'], r['micro_batch'], r['steps'], r['dropped']) for r in got['buckets']] == \
        [('48x32x1', 3, 0, 4), ('48x32x17', 3, 1, 0), ('64x64x1', 1, 0, 1)]
    assert got['steps'] == 1
    text = format_report(ds.report)
    assert 'Steps per epoch: 4' in text and '48x32x17' in text


def test_clips_after_frame_rate_conversion(tmp_path):
    d = tmp_path / 'fps'
    d.mkdir()
    caption(video(d / 'v30.mp4', 48, 32, fps=30, frames=45), 'thirty')     # 1.5 s = 24 frames at 16 fps
    cfg = config(tmp_path, [{'path': str(d)}], frame_buckets=[1, 9, 17])
    ds = build_dataset(cfg, SPEC, 'multiple_overlapping')
    assert [(it.bucket, it.clip_start) for it in ds.items] == [((48, 32, 17), 0), ((48, 32, 17), 7)]
    assert ds.report['files'][0]['media']['frames_at_model_fps'] == 24
    assert [(it.clip_start) for it in build_dataset(cfg, SPEC, 'single_middle').items] == [3]
    # Wan2.2 ti2v-5B runs at 24 fps: 36 frames -> bucket 17, ceil(36/17) = 3 clips over span 19: 0, 9.5 -> 10, 19;
    # 4096 px at AR 1.587 -> 80.6 x 50.8 -> in steps of 32: 96 x 64
    ds24 = build_dataset(config(tmp_path, [{'path': str(d)}], frame_buckets=[1, 9, 17], resolutions=[64]),
                         MediaSpec(24, 32), 'multiple_overlapping')
    assert [(it.bucket, it.clip_start) for it in ds24.items] == [((96, 64, 17), s) for s in (0, 10, 19)]


def test_image_to_video_models_drop_images(two_dirs):
    ds = build_dataset(two_dirs, MediaSpec(16, 16, needs_video=True))
    reasons = {f['name']: f['reason'] for f in ds.report['files']}
    assert reasons['i0.png'] == 'image: this model trains on video clips only (image-to-video)'
    assert reasons['v0.mp4'] is None and all(it.kind == 'video' for it in ds.items)


def test_item_ids_are_stable(two_dirs):
    ids = [it.id for it in build_dataset(two_dirs, SPEC).items]
    assert len(set(ids)) == len(ids)
    assert [it.id for it in build_dataset(two_dirs, SPEC, seed=99).items] == ids


def test_epoch_batches(two_dirs):
    ds = build_dataset(two_dirs, SPEC)
    fn = micro_batch_size_fn(1, 2)
    batches = epoch_batches(ds, fn, dp_world=2, grad_accum=1, seed=5, epoch=0)
    assert len(batches) == ds.steps_per_epoch(1, 2, 2, 1) == 4
    seen = []
    for gb in batches:
        assert len(gb) == 2                                            # one list per data-parallel rank
        for rank in range(2):
            for micro in gb[rank]:
                assert len(micro) == fn(gb.bucket)
                assert all(tuple(ds.by_id[i].bucket) == gb.bucket for i in micro)
                seen += micro
        assert [len(m) for m in gb.for_rank(0)] == [fn(gb.bucket)]
    # the two repeats of every video item are used; 64x64 (1 item < global batch 4) is the remainder
    videos = [it.id for it in ds.items if it.bucket[2] == 17]
    assert sorted(i for i in seen if i in videos) == sorted(videos * 2)
    assert not any(ds.by_id[i].bucket == (64, 64, 1) for i in seen)
    assert epoch_batches(ds, fn, 2, 1, seed=5, epoch=0) == batches
    assert epoch_batches(ds, fn, 2, 1, seed=5, epoch=1) != batches


def test_epoch_batches_are_identical_in_another_process(two_dirs, tmp_path):
    """Ranks are separate processes with their own hash seeds; the plan must not depend on them."""
    ds = build_dataset(two_dirs, SPEC)
    mine = [(gb.bucket, gb.ids, gb.captions) for gb in epoch_batches(ds, micro_batch_size_fn(1, 2), 2, 1, 11, 3)]
    cfg_file = tmp_path / 'cfg.json'
    cfg_file.write_text(json.dumps(two_dirs))
    code = ('import json, sys; from utils.dataset import *; '
            'ds = build_dataset(json.load(open(sys.argv[1])), MediaSpec(16, 16)); '
            'print(json.dumps([(gb.bucket, gb.ids, gb.captions) for gb in epoch_batches(ds, micro_batch_size_fn(1, 2), 2, 1, 11, 3)]))')
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, '-c', code, str(cfg_file)], capture_output=True, text=True, check=True, cwd=root,
                         env={**os.environ, 'PYTHONHASHSEED': '12345', 'PYTHONPATH': root})
    assert json.loads(out.stdout) == json.loads(json.dumps(mine))


def test_demo_dataset_is_deterministic_idempotent_and_fits_the_cpu_demo(tmp_path):
    from tools.make_demo_dataset import make_demo_dataset
    from utils.config import load_dataset_config
    first = make_demo_dataset(tmp_path / 'one')
    second = make_demo_dataset(tmp_path / 'two')
    files = sorted(p.name for p in first.parent.iterdir())
    assert len([f for f in files if f.endswith('.mp4')]) == 8 and len([f for f in files if f.endswith(('.png', '.jpg'))]) == 4
    assert all((first.parent / f).read_bytes() == (second.parent / f).read_bytes() for f in files)
    mtime = os.stat(first.parent / 'clip_00.mp4').st_mtime_ns
    assert make_demo_dataset(tmp_path / 'one') == first                      # up to date: left alone
    assert os.stat(first.parent / 'clip_00.mp4').st_mtime_ns == mtime
    assert not [p for p in tmp_path.iterdir() if p.name.startswith('.')]    # no temporary folders left
    ds = build_dataset(load_dataset_config(first), SPEC)
    assert ds.report['totals']['dropped'] == 0 and ds.report['totals']['used'] == 12
    assert {tuple(b['bucket']) for b in ds.report['buckets']} <= {(w, h, f) for w in (48, 64, 96) for h in (48, 64, 96) for f in (1, 9, 17)}
    fps = {round(f['media']['fps']) for f in ds.report['files'] if f['kind'] == 'video'}
    assert fps == {16, 24}


@pytest.mark.parametrize('sampling, warned', [('timestep', True), ('balanced', False)])
def test_report_gives_each_experts_expected_share_and_warns_under_ten_percent(tiny_models, captioned, tmp_path,
                                                                              capsys, sampling, warned):
    """Wan2.2 T2V-A14B, default timesteps: the high-noise expert is expected to get ~2.6% of the samples."""
    from models.wan.adapter import WanAdapter
    from tests.support.trainer import config_text, write_config
    from utils.config import load_dataset_config, load_main_config
    from utils.train_data import dump_dataset_report
    dataset = write_config(tmp_path, f"resolutions = [32]\nframe_buckets = [1, 17]\n[[directory]]\npath = {str(captioned)!r}\n",
                           'dataset.toml')
    cfg = load_main_config(write_config(tmp_path, config_text(
        tiny_models / 'wan2.2-t2v-a14b' / 'official', dataset, tmp_path / 'out', model_extra=f'expert_sampling = {sampling!r}')))
    report = dump_dataset_report(cfg, WanAdapter(cfg), load_dataset_config(dataset, 16), tmp_path)
    shares = report['experts']['shares']
    assert shares['high_noise'] == pytest.approx(0.026 if warned else 0.5, abs=0.001)
    assert shares['low_noise'] == pytest.approx(1 - shares['high_noise'])
    assert json.loads((tmp_path / 'dataset_report.json').read_text())['experts'] == report['experts']
    out = capsys.readouterr().out
    assert f"expert_sampling = '{sampling}'" in out and 'high_noise' in out
    assert ('warning: the high_noise expert is expected to get 2.6% of the samples' in out) == warned
    assert bool(report['experts']['warnings']) == warned
