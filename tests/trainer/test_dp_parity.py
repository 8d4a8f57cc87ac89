"""A diffusion-pipe config trains what diffusion-pipe would train.

The two files below are written from the keys of diffusion-pipe's own examples (examples/wan_14b_min_vram.toml
and examples/dataset.toml), with the values those examples give; every key they leave out must resolve to
diffusion-pipe's default. DP_DEFAULTS says where in diffusion-pipe each default comes from.
"""

from types import SimpleNamespace

import pytest
import tomli_w

from utils.config import ConfigError, load_dataset_config, load_main_config, validate_dataset, validate_main
from utils.dataset import micro_batch_size_fn
from utils.schedule import lr_multiplier

# The keys of examples/wan_14b_min_vram.toml, with its values (paths made local).
WAN_EXAMPLE = {
    'output_dir': 'runs', 'dataset': 'dataset.toml',
    'epochs': 1000, 'micro_batch_size_per_gpu': 1, 'pipeline_stages': 1, 'gradient_accumulation_steps': 1,
    'gradient_clipping': 1, 'warmup_steps': 10,
    'eval_every_n_epochs': 1, 'eval_before_first_step': True, 'eval_micro_batch_size_per_gpu': 1,
    'eval_gradient_accumulation_steps': 1,
    'save_every_n_epochs': 5, 'checkpoint_every_n_minutes': 120, 'activation_checkpointing': 'unsloth',
    'partition_method': 'parameters', 'save_dtype': 'bfloat16', 'caching_batch_size': 1, 'steps_per_print': 1,
    'video_clip_mode': 'single_beginning', 'blocks_to_swap': 32,
    'model': {'type': 'wan', 'ckpt_path': 'Wan2.1-T2V-14B', 'dtype': 'bfloat16', 'transformer_dtype': 'float8',
              'timestep_sample_method': 'logit_normal'},
    'adapter': {'type': 'lora', 'rank': 32, 'dtype': 'bfloat16'},
    'optimizer': {'type': 'AdamW8bitKahan', 'lr': 2e-5, 'betas': [0.9, 0.99], 'weight_decay': 0.01, 'stabilize': False},
}
# The keys examples/dataset.toml sets (its commented-out ones left out).
DATASET_EXAMPLE = {
    'resolutions': [512], 'enable_ar_bucket': True, 'min_ar': 0.5, 'max_ar': 2.0, 'num_ar_buckets': 7,
    'frame_buckets': [1, 33], 'directory': [{'path': 'videos', 'num_repeats': 1}],
}

# (key path, diffusion-pipe's default, where diffusion-pipe sets it) for keys the examples leave out.
DP_DEFAULTS = [
    ('eval_datasets', [], 'train.py set_config_defaults'),
    ('eval_every_n_steps', None, 'train.py set_config_defaults'),
    ('eval_every_n_examples', None, 'train.py set_config_defaults'),
    ('reentrant_activation_checkpointing', False, 'train.py set_config_defaults'),
    ('compile', False, 'train.py set_config_defaults'),
    ('x_axis_examples', False, 'train.py set_config_defaults'),
    ('logging_steps', 1, 'train.py set_config_defaults'),
    ('lr_scheduler', 'constant', "train.py: config.get('lr_scheduler', 'constant')"),
    ('uncond_fraction', 0.0, "train.py: config.get('uncond_fraction', 0.0)"),
    ('disable_block_swap_for_eval', False, "train.py: config.get('disable_block_swap_for_eval', False)"),
    ('max_steps', None, "train.py: 'max_steps' in config"),
    ('huber_delta', None, "models/base.py loss: 'huber_delta' in config"),
    ('smooth_l1_beta', None, "models/base.py loss: 'smooth_l1_beta' in config"),
    ('model.cache_text_embeddings', True, "models/wan/wan.py: get('cache_text_embeddings', True)"),
    ('adapter.dropout', 0.0, 'train.py set_config_defaults (lora)'),
    ('adapter.alpha', 32, 'train.py set_config_defaults: alpha = rank'),
    ('adapter.exclude_modules', None, "models/base.py configure_adapter: get('exclude_modules', None)"),
]
DP_DATASET_DEFAULTS = [
    ('shuffle_tags', False, 'utils/dataset.py DirectoryDataset._set_defaults'),
    ('caption_prefix', '', 'utils/dataset.py DirectoryDataset._set_defaults'),
    ('shuffle_metadata', True, 'utils/dataset.py DirectoryDataset._set_defaults'),
    ('cache_shuffle_num', 0, "utils/dataset.py: get('cache_shuffle_num', 0)"),
    ('cache_shuffle_delimiter', ', ', "utils/dataset.py: get('cache_shuffle_delimiter', ', ')"),
    ('skip_empty_caption', True, "utils/dataset.py: get('skip_empty_caption', True)"),
    ('ar_buckets', None, "utils/dataset.py: get('ar_buckets', None)"),
    ('size_buckets', None, "utils/dataset.py: get('size_buckets', None)"),
    ('mask_path', None, "utils/dataset.py: 'mask_path' in directory_config"),
    ('default_mask_file', None, "utils/dataset.py: 'default_mask_file' in directory_config"),
]


def _get(cfg, dotted):
    for part in dotted.split('.'):
        cfg = cfg[part]
    return cfg


@pytest.fixture
def example(tmp_path):
    (tmp_path / 'main.toml').write_text(tomli_w.dumps(WAN_EXAMPLE))
    (tmp_path / 'dataset.toml').write_text(tomli_w.dumps(DATASET_EXAMPLE))
    (tmp_path / 'videos').mkdir()
    return load_main_config(tmp_path / 'main.toml', world_size=1), load_dataset_config(tmp_path / 'dataset.toml')


def test_dp_wan_example_loads_and_keeps_its_values(example):
    cfg, ds = example
    assert cfg['warmup_steps'] == 10 and cfg['blocks_to_swap'] == 32 and cfg['activation_checkpointing'] == 'unsloth'
    assert cfg['model']['transformer_dtype'] == 'float8' and cfg['optimizer']['stabilize'] is False
    d = ds['directory'][0]
    assert (d['enable_ar_bucket'], d['frame_buckets'], d['resolutions']) == (True, [1, 33], [512])


DP_ALL = [('main', *row) for row in DP_DEFAULTS] + [('dataset', *row) for row in DP_DATASET_DEFAULTS]


@pytest.mark.parametrize('file,key,default,source', DP_ALL, ids=[f'{f}:{k}' for f, k, _, _ in DP_ALL])
def test_keys_the_examples_leave_out_resolve_to_dp_defaults(example, file, key, default, source):
    cfg = example[0] if file == 'main' else example[1]['directory'][0]
    assert _get(cfg, key) == default, source


def _main(**extra):
    raw = {'output_dir': 'o', 'dataset': 'd.toml', 'model': {'type': 'wan', 'ckpt_path': 'c'},
           'optimizer': {'type': 'adamw', 'lr': 1e-4}, 'adapter': {'rank': 4}, **extra}
    return validate_main(raw, 'main.toml')


def test_defaults_that_used_to_differ_from_dp():
    cfg, issues = _main()
    assert not issues
    # train.py set_config_defaults: eval_before_first_step = True
    assert cfg['eval_before_first_step'] is True
    # train.py: CosineAnnealingLR(T_max = epochs * steps_per_epoch, eta_min = 1e-6), max_steps does not shorten it
    assert cfg['lr_min'] == 1e-6 and cfg['lr_schedule_steps'] == 'epochs'
    ds, issues = validate_dataset({'directory': [{'path': 'x'}]}, 'dataset.toml')
    # utils/dataset.py DirectoryDataset: enable_ar_bucket defaults to False (one square bucket, centre crop)
    assert not issues and ds['directory'][0]['enable_ar_bucket'] is False


def test_lr_schedule_spans_the_epochs_and_cosine_ends_at_lr_min():
    from train import Trainer
    cfg, _ = _main(epochs=10, max_steps=30, warmup_steps=5, lr_scheduler='cosine')
    trainer = SimpleNamespace(config=cfg, data=SimpleNamespace(steps_per_epoch=20), total_steps=30)
    assert Trainer.schedule_steps(trainer) == 5 + 10 * 20            # dp: warm-up, then T_max = epochs x steps
    cfg['lr_schedule_steps'] = 'max_steps'
    assert Trainer.schedule_steps(trainer) == 30                      # opt-in: the decay ends at the last step
    floor = 1e-6 / 1e-4
    assert lr_multiplier(205, 5, 205, 'cosine', floor) == pytest.approx(floor)
    assert lr_multiplier(105, 5, 205, 'cosine', floor) == pytest.approx(floor + (1 - floor) * 0.5)


def test_dp_spellings_and_forms_are_accepted():
    cfg, issues = _main(eval_datasets=['a.toml', {'name': 'b', 'config': 'b.toml'}],
                        micro_batch_size_per_gpu=[[512, 4], [1024, 1]], image_micro_batch_size_per_gpu=[[512, 8]],
                        eval_image_micro_batch_size_per_gpu=2, logging_steps=5, huber_delta=0.5)
    assert not issues, issues
    assert [e['name'] for e in cfg['eval_datasets']] == ['eval0', 'b']
    assert cfg['eval_micro_batch_size_per_gpu'] == [[512, 4], [1024, 1]]      # dp: defaults to the training one
    train = micro_batch_size_fn(cfg['micro_batch_size_per_gpu'], cfg['image_micro_batch_size_per_gpu'])
    assert (train((1024, 1024, 33)), train((512, 512, 33)), train((512, 512, 1))) == (1, 4, 8)
    cfg, issues = _main(image_eval_micro_batch_size_per_gpu=3)              # the name dp's example comment uses
    assert not issues and cfg['eval_image_micro_batch_size_per_gpu'] == 3


def test_two_loss_keys_are_refused_with_the_reason():
    _, issues = _main(huber_delta=0.5, smooth_l1_beta=0.1)
    assert len(issues) == 1 and issues[0].key == 'smooth_l1_beta' and issues[0].file == 'main.toml'
    assert 'set only one of' in issues[0].message


def test_losses_match_torch():
    import torch
    import torch.nn.functional as F

    from utils.losses import elementwise_loss
    a, b = torch.randn(5), torch.randn(5)
    assert torch.allclose(elementwise_loss(a, b, {}), (a - b) ** 2)
    assert torch.allclose(elementwise_loss(a, b, {'huber_delta': 0.3}), F.huber_loss(a, b, reduction='none', delta=0.3))
    assert torch.allclose(elementwise_loss(a, b, {'smooth_l1_beta': 0.3}),
                          F.smooth_l1_loss(a, b, reduction='none', beta=0.3))


def test_exclude_modules_matches_official_and_diffusers_names():
    from models.wan.adapter import excluded_module
    name = 'blocks.3.ffn.net.0.proj'                 # official: blocks.3.ffn.0
    assert excluded_module(name, ['ffn.0'])
    assert excluded_module(name, r'blocks\.3\..*')
    assert excluded_module('blocks.3.attn1.to_q', ['self_attn.q'])
    assert not excluded_module('blocks.3.attn2.to_q', ['self_attn.q'])
    _, issues = _main(adapter={'rank': 4, 'exclude_modules': 3})
    assert issues and issues[0].key == 'adapter.exclude_modules'


def test_subsample_ratio_and_unknown_key_errors(tmp_path):
    ds, issues = validate_dataset({'subsample_ratio': 0.5, 'directory': [{'path': 'x', 'shuffle_metadata': False}]},
                                  'dataset.toml')
    assert not issues and ds['subsample_ratio'] == 0.5 and ds['directory'][0]['shuffle_metadata'] is False
    _, issues = validate_dataset({'subsample_ratio': 0, 'directory': [{'path': 'x'}]}, 'dataset.toml')
    assert issues[0].key == 'subsample_ratio'
    with pytest.raises(ConfigError):
        (tmp_path / 'd.toml').write_text("shuffle_metdata = true\n[[directory]]\npath = 'x'\n")
        load_dataset_config(tmp_path / 'd.toml')


def test_skyreels_folders_train_at_24_fps():
    from models.wan.variants import VARIANTS, checkpoint_framerate
    v = VARIANTS['wan2.1-t2v-14b']
    assert checkpoint_framerate(v, '/models/SkyReels-V2-T2V-14B-540P') == 24     # dp models/wan/wan.py
    assert checkpoint_framerate(v, '/models/Wan2.1-T2V-14B') == 16
    assert v.media_spec(24).framerate == 24


def test_captions_are_cleaned_as_wan_cleans_prompts():
    from utils.captions import caption_variants, clean_caption
    assert clean_caption('  a  &amp;amp; b\n\tc ') == 'a & b c'
    assert clean_caption('sch\u00c3\u00b6n') == 'schön'                        # ftfy repairs mojibake
    assert caption_variants(['x ,  y'], prefix='p  ') == ['p x , y']
