"""The config of a `taehv` job, made from a LoRA task's draft: same dataset, same Wan model (its VAE is the
reference and fills the shared latent cache), same run folder; the request adds the [taehv] table and any
top-level TAEHV keys (models/taehv/config.py). Checked with the trainer's own schema before queueing."""

import tomllib

import tomli_w

from models.taehv.config import SHARED, validate_taehv
from utils.config import MODEL_KEYS, ConfigIssue

DEFAULT_OPTIMIZER = {'type': 'adamw', 'lr': 3e-4, 'weight_decay': 0.0}


def taehv_config(main_text, taehv, settings, job_dir, output_dir, world_size):
    """-> (config.toml text for <job_dir>, [ConfigIssue])."""
    file = str(job_dir / 'config.toml')
    try:
        lora = tomllib.loads(main_text)
    except tomllib.TOMLDecodeError as e:
        return '', [ConfigIssue(file, '(syntax)', None, f"the task's config is not valid TOML: {e}")]
    if not isinstance(taehv, dict) or not isinstance(settings, dict):
        return '', [ConfigIssue(file, 'taehv', taehv, 'taehv and settings must be objects')]
    raw = {k: v for k, v in lora.items() if k in SHARED}
    raw.update(settings)
    raw.update(output_dir=str(output_dir), dataset=str(job_dir / 'dataset.toml'))
    raw.setdefault('eval_datasets', [{'name': 'train', 'config': str(job_dir / 'dataset.toml')}])
    raw['wan'] = {k: v for k, v in (lora.get('model') or {}).items() if k in MODEL_KEYS}
    raw['taehv'] = taehv
    raw.setdefault('optimizer', dict(DEFAULT_OPTIMIZER))
    _, issues = validate_taehv(raw, file, str(job_dir), world_size)
    return tomli_w.dumps(raw), issues
