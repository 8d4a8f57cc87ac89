"""The TAEHV trainer's config (train_taehv.py): its own small schema, declared with utils/config.py's Key
machinery. Top-level keys shared with LoRA training mean the same thing there; `[wan]` is a LoRA config's
`[model]` table (the reference VAE and the latent cache); `[taehv]` and `[optimizer]` are below.

    cfg = load_taehv_config('examples/taehv_demo.toml', world_size=2)   # ConfigError lists every issue
"""

from pathlib import Path

from utils.config import (MAIN_KEYS, MISSING, MODEL_KEYS, NUM, INT, STR, ConfigError, ConfigIssue, Key,
                          _check_optimizer, _non_negative, _positive, _resolve_path, check_table, read_toml)

PRESET_NAMES = ('taew2_1', 'taew2_2', 'tiny-taew2_1', 'tiny-taew2_2')

SHARED = ('output_dir', 'dataset', 'eval_datasets', 'epochs', 'max_steps', 'seed', 'micro_batch_size_per_gpu',
          'gradient_accumulation_steps', 'gradient_clipping', 'warmup_steps', 'lr_scheduler', 'eval_before_first_step',
          'save_every_n_epochs', 'checkpoint_every_n_epochs', 'checkpoint_every_n_minutes', 'caching_batch_size',
          'map_num_proc', 'video_clip_mode')

TOP_KEYS = {
    **{k: MAIN_KEYS[k] for k in SHARED},
    'eval_every_n_epochs': Key(1, INT, 'evaluate (PSNR / MSE against the reference VAE) every n epochs', check=_positive),
    'checkpoint_every_n_steps': Key(None, INT, 'resumable checkpoint every n optimizer steps', check=_positive),
    'eval_videos': Key(2, INT, 'side-by-side videos (original | reference VAE | TAEHV) written per evaluation',
                       check=_non_negative),
    'wan': Key(MISSING, (dict,), '[wan] table: the Wan model whose VAE is the reference (keys of [model])'),
    'taehv': Key({}, (dict,), '[taehv] table'),
    'optimizer': Key(MISSING, (dict,), '[optimizer] table'),
}

TAEHV_KEYS = {
    'init_from': Key(None, STR, 'start from this TAEHV file (.pth / .safetensors in the published layout, e.g. taew2_1.pth)'),
    'preset': Key(None, STR, 'without init_from: random weights of this shape', choices=PRESET_NAMES),
    'dtype': Key('float32', STR, "compute dtype: 'float32', or 'bfloat16' on GPUs", choices=('float32', 'bfloat16')),
    'encoder_weight': Key(1.0, NUM, 'weight of the encoder loss: MSE to the Wan VAE latent', check=_non_negative),
    'decoder_weight': Key(1.0, NUM, 'weight of the decoder loss: MSE of the decoded Wan latent to the clip', check=_non_negative),
    'adversarial_weight': Key(0.0, NUM, 'weight of the adversarial loss on decoded frames (0 = no discriminator)',
                              check=_non_negative),
    'adversarial_warmup_steps': Key(0, INT, 'ramp the adversarial weight linearly from 0 over these steps',
                                    check=_non_negative),
    'discriminator_width': Key(32, INT, 'channels of the patch discriminator first layer', check=_positive),
}


def validate_taehv(raw, file='config.toml', base_dir=None, world_size=None):
    """-> (resolved config, issues), like utils.config.validate_main."""
    issues = []
    base_dir = base_dir or str(Path(file).parent)
    cfg = check_table(raw, TOP_KEYS, file, '', issues)
    if isinstance(cfg.get('wan'), dict):
        cfg['wan'] = check_table(cfg['wan'], MODEL_KEYS, file, 'wan.', issues)
    if isinstance(cfg.get('taehv'), dict):
        cfg['taehv'] = check_table(cfg['taehv'], TAEHV_KEYS, file, 'taehv.', issues)
        if not cfg['taehv'].get('init_from') and not cfg['taehv'].get('preset') and 'taehv' in raw:
            issues.append(ConfigIssue(file, 'taehv.init_from', MISSING, 'set init_from (a TAEHV file) or preset'))
    if cfg.get('optimizer') is not None:
        cfg['optimizer'] = _check_optimizer(cfg['optimizer'], file, issues)
    if not isinstance(cfg.get('micro_batch_size_per_gpu', 1), int):
        issues.append(ConfigIssue(file, 'micro_batch_size_per_gpu', cfg['micro_batch_size_per_gpu'], 'must be one number here'))
    if cfg.get('checkpoint_every_n_epochs') and cfg.get('checkpoint_every_n_minutes'):
        issues.append(ConfigIssue(file, 'checkpoint_every_n_minutes', cfg['checkpoint_every_n_minutes'],
                                  'set only one of checkpoint_every_n_epochs and checkpoint_every_n_minutes'))
    for table, key in ((None, 'output_dir'), (None, 'dataset'), ('wan', 'ckpt_path'), ('wan', 'transformer_path'),
                       ('wan', 'llm_path'), ('taehv', 'init_from')):
        holder = cfg if table is None else (cfg.get(table) or {})
        if isinstance(holder.get(key), str):
            holder[key] = _resolve_path(holder[key], base_dir)
    cfg['eval_datasets'] = [{**e, 'config': _resolve_path(e['config'], base_dir)}
                            if isinstance(e, dict) and isinstance(e.get('config'), str) else e
                            for e in cfg.get('eval_datasets') or []]
    # What utils/train_data.py and utils/checkpointing.py read from a LoRA config, fixed here.
    cfg.update(pipeline_stages=1, image_micro_batch_size_per_gpu=None, eval_image_micro_batch_size_per_gpu=None,
               eval_micro_batch_size_per_gpu=cfg.get('micro_batch_size_per_gpu'), eval_gradient_accumulation_steps=1)
    return cfg, issues


def load_taehv_config(path, world_size=None):
    path = Path(path)
    cfg, issues = validate_taehv(read_toml(path), str(path), str(path.parent), world_size)
    if issues:
        raise ConfigError(issues)
    return cfg

