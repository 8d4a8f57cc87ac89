"""The config schema: diffusion-pipe's keys keep their meaning, and impossible configs are refused
with the file, the key, the value and the reason, before any weight loads."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from utils.config import (ConfigError, load_dataset_config, load_main_config, validate_dataset, validate_main)

ROOT = Path(__file__).resolve().parents[2]

MAIN = """
output_dir = 'runs'
dataset = 'dataset.toml'
epochs = 2
micro_batch_size_per_gpu = 1
pipeline_stages = 1
gradient_accumulation_steps = 1
gradient_clipping = 1.0
warmup_steps = 10
lr_scheduler = 'linear'
save_every_n_epochs = 1
checkpoint_every_n_minutes = 60
activation_checkpointing = true
partition_method = 'parameters'
save_dtype = 'bfloat16'
caching_batch_size = 1
steps_per_print = 1
video_clip_mode = 'single_beginning'
eval_every_n_epochs = 1
eval_before_first_step = true
eval_micro_batch_size_per_gpu = 1
eval_gradient_accumulation_steps = 1

[model]
type = 'wan'
ckpt_path = '/models/Wan2.1-T2V-1.3B'
dtype = 'bfloat16'
transformer_dtype = 'float8'
timestep_sample_method = 'logit_normal'

[adapter]
type = 'lora'
rank = 32
dtype = 'bfloat16'

[optimizer]
type = 'adamw_optimi'
lr = 2e-5
betas = [0.9, 0.99]
weight_decay = 0.01
eps = 1e-8

[monitoring]
enable_wandb = false
"""

DATASET = """
resolutions = [512]
enable_ar_bucket = true
min_ar = 0.5
max_ar = 2.0
num_ar_buckets = 7
frame_buckets = [1, 33]

[[directory]]
path = 'clips'
num_repeats = 2
"""


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def issues_of(exc):
    return {(i.key, i.message) for i in exc.value.issues}


def test_diffusion_pipe_example_config_is_accepted_with_defaults_and_paths_resolved(tmp_path):
    cfg = load_main_config(write(tmp_path, 'main.toml', MAIN))
    assert cfg['dataset'] == str(tmp_path / 'dataset.toml')
    assert cfg['output_dir'] == str(tmp_path / 'runs')
    assert cfg['adapter']['alpha'] == 32          # alpha equals rank unless set
    assert cfg['model']['min_t'] == 0.0 and cfg['model']['max_t'] == 1.0
    assert cfg['optimizer']['betas'] == [0.9, 0.99]
    assert cfg['seed'] == 42


def test_unknown_key_names_the_nearest_known_key(tmp_path):
    path = write(tmp_path, 'main.toml', MAIN.replace('warmup_steps = 10', 'warmup_step = 10'))
    with pytest.raises(ConfigError) as e:
        load_main_config(path)
    (issue,) = e.value.issues
    assert issue.key == 'warmup_step' and issue.file == str(path)
    assert "did you mean 'warmup_steps'" in issue.message
    assert 'warmup_step = 10' in str(e.value)


def test_unknown_keys_in_tables_and_optimizer_arguments(tmp_path):
    text = MAIN.replace("rank = 32", "rank = 32\nranks = 4").replace("eps = 1e-8", "eps = 1e-8\nmomentun = 0.9")
    with pytest.raises(ConfigError) as e:
        load_main_config(write(tmp_path, 'main.toml', text))
    keys = {i.key: i.message for i in e.value.issues}
    assert "did you mean 'rank'" in keys['adapter.ranks']
    assert 'unknown key for adamw_optimi' in keys['optimizer.momentun']


def test_optimizer_specific_arguments_are_passed_through(tmp_path):
    text = MAIN.replace("type = 'adamw_optimi'", "type = 'sgd'").replace("betas = [0.9, 0.99]\n", "momentum = 0.9\n").replace('eps = 1e-8\n', '')
    cfg = load_main_config(write(tmp_path, 'main.toml', text))
    assert cfg['optimizer']['momentum'] == 0.9


def test_pipeline_stages_larger_than_the_processes_is_refused():
    cfg, issues = validate_main(__import__('tomllib').loads(MAIN.replace('pipeline_stages = 1', 'pipeline_stages = 4')),
                                'main.toml', '/tmp', world_size=2)
    (issue,) = issues
    assert issue.key == 'pipeline_stages' and issue.value == 4
    assert 'larger than the 2 process(es)' in issue.message


def test_pipeline_stages_must_divide_the_processes():
    _, issues = validate_main(__import__('tomllib').loads(MAIN.replace('pipeline_stages = 1', 'pipeline_stages = 2')),
                              'main.toml', '/tmp', world_size=3)
    assert [i.key for i in issues] == ['pipeline_stages']


@pytest.mark.parametrize('bad, key, fragment', [
    ('resolutions = [500]', 'resolutions', '500 is not a multiple of 16'),
    ('resolutions = [[640, 360]]', 'resolutions', 'not a multiple of 16'),
    ('frame_buckets = [1, 32]', 'frame_buckets', '32 is not valid: frame counts must be 4n+1'),
    ('min_ar = 3.0', 'max_ar', 'must be at least min_ar'),
])
def test_impossible_dataset_values_are_refused(tmp_path, bad, key, fragment):
    first_key = bad.split(' =')[0]
    text = '\n'.join(bad if line.startswith(first_key + ' ') else line for line in DATASET.splitlines())
    with pytest.raises(ConfigError) as e:
        load_dataset_config(write(tmp_path, 'dataset.toml', text))
    assert any(i.key == key and fragment in i.message for i in e.value.issues), e.value.issues


def test_ti2v_5b_needs_multiples_of_32():
    raw = __import__('tomllib').loads(DATASET.replace('[512]', '[496]'))
    assert validate_dataset(raw, 'd.toml', '/tmp', size_multiple=16)[1] == []
    _, issues = validate_dataset(raw, 'd.toml', '/tmp', size_multiple=32)
    assert issues and 'multiple of 32' in issues[0].message


def test_directory_entries_inherit_and_override_top_level_keys(tmp_path):
    text = DATASET + "\n[[directory]]\npath = 'images'\nframe_buckets = [1]\nresolutions = [256]\n"
    cfg = load_dataset_config(write(tmp_path, 'dataset.toml', text))
    first, second = cfg['directory']
    assert first['frame_buckets'] == [1, 33] and first['resolutions'] == [512] and first['num_repeats'] == 2
    assert second['frame_buckets'] == [1] and second['resolutions'] == [256] and second['num_repeats'] == 1
    assert first['path'] == str(tmp_path / 'clips')


def test_wrong_types_and_choices(tmp_path):
    text = MAIN.replace('epochs = 2', "epochs = 'two'").replace("lr_scheduler = 'linear'", "lr_scheduler = 'cosin'")
    with pytest.raises(ConfigError) as e:
        load_main_config(write(tmp_path, 'main.toml', text))
    keys = {i.key: i.message for i in e.value.issues}
    assert keys['epochs'] == 'must be an integer'
    assert "did you mean 'cosine'" in keys['lr_scheduler']


def test_missing_required_and_syntax_errors(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_main_config(write(tmp_path, 'main.toml', MAIN.replace("ckpt_path = '/models/Wan2.1-T2V-1.3B'\n", '')))
    assert ('model.ckpt_path', 'is required') in issues_of(e)
    with pytest.raises(ConfigError) as e:
        load_main_config(write(tmp_path, 'bad.toml', 'epochs = = 3'))
    assert e.value.issues[0].key == '(syntax)' and 'line 1' in e.value.issues[0].message


def test_min_t_must_be_below_max_t(tmp_path):
    text = MAIN.replace("timestep_sample_method = 'logit_normal'", "min_t = 0.9\nmax_t = 0.5")
    with pytest.raises(ConfigError) as e:
        load_main_config(write(tmp_path, 'main.toml', text))
    assert ('model.max_t', 'must be greater than min_t (0.9)') in issues_of(e)


def test_config_reference_doc_is_current():
    result = subprocess.run([sys.executable, 'tools/config_reference.py', '--check'], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_train_py_refuses_before_loading_weights(tmp_path):
    """pipeline_stages = 2 in a single process: exit code 2, the reason on stderr and as a failed event."""
    write(tmp_path, 'dataset.toml', DATASET)
    main = write(tmp_path, 'main.toml', MAIN.replace('pipeline_stages = 1', 'pipeline_stages = 2'))
    run_dir = tmp_path / 'run'
    result = subprocess.run([sys.executable, 'train.py', '--config', str(main), '--run_dir', str(run_dir)],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert 'pipeline_stages = 2: larger than the 1 process(es)' in result.stderr
    events = (run_dir / 'events.jsonl').read_text()
    assert '"state": "failed"' in events and 'pipeline_stages' in events


@pytest.mark.parametrize('name', sorted(p.name for p in (ROOT / 'examples').glob('*.toml')))
def test_example_configs_are_valid(name):
    """Every commented example stays loadable: a main config with up to 4 processes, or a dataset config."""
    path = ROOT / 'examples' / name
    raw = __import__('tomllib').loads(path.read_text())
    if 'directory' in raw:
        multiple = 32 if '5b' in name else 16
        load_dataset_config(path, size_multiple=multiple)
    elif 'taehv' in raw:                          # train_taehv.py's config: its own schema
        from models.taehv.config import load_taehv_config
        cfg = load_taehv_config(path, world_size=4)
        assert Path(cfg['dataset']).is_absolute()
    else:
        cfg = load_main_config(path, world_size=4)
        assert Path(cfg['dataset']).is_absolute()


def test_train_py_refuses_swapping_more_blocks_than_the_model_has(tiny_models, tmp_path):
    write(tmp_path, 'dataset.toml', DATASET)
    ckpt = tiny_models / 'wan2.1-t2v-1.3b' / 'official'
    main = write(tmp_path, 'main.toml', MAIN.replace("ckpt_path = '/models/Wan2.1-T2V-1.3B'", f"ckpt_path = '{ckpt}'")
                 .replace('caching_batch_size = 1', 'caching_batch_size = 1\nblocks_to_swap = 3')
                 .replace("transformer_dtype = 'float8'\n", ''))
    result = subprocess.run([sys.executable, 'train.py', '--config', str(main)], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2
    assert 'blocks_to_swap = 3: this model has 4 blocks; at most 2 can be swapped' in result.stderr
