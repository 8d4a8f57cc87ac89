"""eval_split: a share of the training files held out as the eval dataset 'heldout', chosen by seed and file
name: the two sides are disjoint and together the whole dataset, the same every build, and another seed
chooses other files."""

import os

import pytest

from tests.support.mediagen import caption, image
from utils.config import validate_dataset
from utils.dataset import HELDOUT, MediaSpec, build_dataset, format_report, heldout_config, heldout_files

SPEC = MediaSpec(framerate=16, size_multiple=16)


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp('split')
    for i in range(20):
        image(d / f'img{i:02d}.png', 48, 32, color=(10 * i, 40, 40))
        caption(d / f'img{i:02d}.png', f'picture {i}')
    return d


def cfg(folder, **top):
    raw = {'resolutions': [32], 'frame_buckets': [1], **top, 'directory': [{'path': str(folder)}]}
    out, issues = validate_dataset(raw, str(folder / 'dataset.toml'))
    assert not issues, issues
    return out


def names(ds):
    return {os.path.basename(it.path) for it in ds.items}


def test_the_split_is_disjoint_complete_stable_and_seeded(folder):
    c = cfg(folder, eval_split=0.2)
    train, held = build_dataset(c, SPEC, seed=7), build_dataset(heldout_config(c), SPEC, seed=7)
    everything = names(build_dataset(cfg(folder), SPEC, seed=7))
    assert len(everything) == 20
    assert len(names(held)) == 4 and len(names(train)) == 16
    assert names(train).isdisjoint(names(held)) and names(train) | names(held) == everything
    assert names(build_dataset(c, SPEC, seed=7)) == names(train)                          # stable
    assert names(build_dataset(heldout_config(c), SPEC, seed=7)) == names(held)
    others = [names(build_dataset(heldout_config(c), SPEC, seed=s)) for s in (1, 2, 3)]
    assert any(o != names(held) for o in others) and all(len(o) == 4 for o in others)   # seeded
    files = {f['name']: f for f in train.report['files']}
    assert all(files[n]['status'] == 'split_off' for n in names(held))
    assert train.report['totals']['split_off'] == 4 and train.report['totals']['used'] == 16
    assert 'held out for evaluation' in format_report(train.report)
    assert held.report['eval_split'] == {'share': 0.2, 'side': HELDOUT, 'heldout_files': 4}


def test_heldout_files_keeps_a_file_on_its_side_as_the_folder_grows():
    before = heldout_files([f'0/f{i}.png' for i in range(100)], 0.1, seed=3)
    after = heldout_files([f'0/f{i}.png' for i in range(101)], 0.1, seed=3)
    assert len(before) == len(after) == 10 and len(before & after) >= 9
    assert heldout_files(['0/only.png'], 0.5, 3) == set()                    # one file: nothing held out
    assert len(heldout_files(['0/a.png', '0/b.png'], 0.01, 3)) == 1           # at least one, never all


def test_eval_split_must_leave_something_to_train(folder):
    for bad in (0, 1, 1.5):
        _, issues = validate_dataset({'eval_split': bad, 'directory': [{'path': str(folder)}]}, 'dataset.toml')
        assert [i.key for i in issues] == ['eval_split'], issues


def test_the_trainer_warns_when_asked_to_evaluate_with_nothing_to_evaluate():
    from train import nothing_to_evaluate
    assert 'nothing to evaluate' in nothing_to_evaluate({'eval_every_n_epochs': 1}, {})
    assert nothing_to_evaluate({'eval_every_n_epochs': 1}, {HELDOUT: {}}) is None
    assert nothing_to_evaluate({'eval_every_n_epochs': None}, {}) is None
