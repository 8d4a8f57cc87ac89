"""The one config schema: main training TOML and dataset TOML, in diffusion-pipe's dialect.

Every key diffusion-pipe accepts for Wan is declared here with its default and meaning; a key we do
not know is an error that names the nearest known key. Values are checked before any weight loads,
and every problem is reported with the file, the key and the value. The studio validates through
this same module (`validate_main`, `validate_dataset`), so the form and the trainer never disagree.

    cfg = load_main_config('my.toml', world_size=2)      # raises ConfigError listing every issue
    ds = load_dataset_config(cfg['dataset'])
"""

import difflib
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

MISSING = object()
DTYPES = ('float32', 'bfloat16', 'float16')
FLOAT8 = ('float8', 'float8_e4m3fn', 'float8_e5m2')
CLIP_MODES = ('single_beginning', 'single_middle', 'multiple_overlapping')


@dataclass
class ConfigIssue:
    file: str
    key: str          # dotted path: 'epochs', 'model.min_t', 'directory[0].path'
    value: Any
    message: str

    def __str__(self):
        where = f'{self.file}: ' if self.file else ''
        if self.value is MISSING:
            return f'{where}{self.key}: {self.message}'
        return f'{where}{self.key} = {self.value!r}: {self.message}'

    def to_dict(self):
        return {'file': self.file, 'field': self.key,
                'value': None if self.value is MISSING else self.value, 'message': self.message}


class ConfigError(ValueError):
    def __init__(self, issues):
        self.issues = list(issues)
        super().__init__('\n'.join(str(i) for i in self.issues))


# --------------------------------------------------------------------------------------------
# Key declarations
# --------------------------------------------------------------------------------------------

@dataclass
class Key:
    default: Any = None               # MISSING = required
    types: tuple = ()                 # accepted Python types of the TOML value (() = any)
    doc: str = ''
    choices: tuple = ()
    check: Callable | None = None     # value -> error message or None


def _positive(v):
    return None if v > 0 else 'must be greater than 0'


def _non_negative(v):
    return None if v >= 0 else 'must be 0 or more'


def _unit_interval(v):
    return None if 0 <= v <= 1 else 'must be between 0 and 1'


def _frame_bucket(v):
    return None if isinstance(v, int) and v >= 1 and (v - 1) % 4 == 0 else 'frame counts must be 4n+1 (1, 5, 9, ..., 33, ..., 81)'


def _frame_buckets(values):
    for v in values:
        if (err := _frame_bucket(v)):
            return f'{v} is not valid: {err}'
    return None


def _resolutions(values):
    for r in values:
        if isinstance(r, (int, float)) and not isinstance(r, bool):
            if r <= 0:
                return f'{r} must be positive'
        elif isinstance(r, list) and len(r) == 2 and all(isinstance(x, int) and x > 0 for x in r):
            pass
        else:
            return f'{r!r} must be a side length (512) or a [width, height] pair'
    return None


def _ar_buckets(values):
    for r in values:
        if isinstance(r, (int, float)) and not isinstance(r, bool) and r > 0:
            continue
        if isinstance(r, list) and len(r) == 2 and all(isinstance(x, (int, float)) and x > 0 for x in r):
            continue
        return f'{r!r} must be an aspect ratio (width/height) or a [width, height] pair'
    return None


def _size_buckets(values):
    for b in values:
        if not (isinstance(b, list) and len(b) == 3 and all(isinstance(x, int) and x > 0 for x in b)):
            return f'{b!r} must be [width, height, frames]'
        if (err := _frame_bucket(b[2])):
            return f'{b!r}: {err}'
    return None


def _micro_batch(v):
    if isinstance(v, int) and not isinstance(v, bool):
        return _positive(v)
    if isinstance(v, list) and v and all(isinstance(p, list) and len(p) == 2 and all(isinstance(x, int) and x > 0 for x in p)
                                         for p in v):
        return None
    return 'must be a batch size or a non-empty list of [resolution, batch size] pairs, e.g. [[512, 4], [1024, 1]]'


def _eval_datasets(v):
    for i, entry in enumerate(v):
        if isinstance(entry, str):
            continue
        if not isinstance(entry, dict) or set(entry) != {'name', 'config'}:
            return (f'entry {i} must be a dataset file path or {{name = "...", config = "path/to/eval_dataset.toml"}}')
    return None


def _fraction(v):
    return None if 0 < v <= 1 else 'must be more than 0 and at most 1'


def _share(v):
    return None if 0 < v < 1 else 'must be more than 0 and less than 1 (e.g. 0.1)'


def _exclude_modules(v):
    if isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v)):
        return None
    return 'must be a regular expression (string) or a list of module names'


LOSS_KEYS = ('pseudo_huber_c', 'huber_delta', 'smooth_l1_beta')
INT = (int,)
NUM = (int, float)
BOOL = (bool,)
STR = (str,)
LIST = (list,)

MAIN_KEYS = {
    'output_dir': Key(MISSING, STR, 'folder for training runs; each run makes a new folder inside'),
    'dataset': Key(MISSING, STR, 'dataset TOML file (relative paths resolve against this config file)'),
    'eval_datasets': Key([], LIST, "evaluation datasets: {name, config} tables, or dataset file paths (named 'eval0', 'eval1', ...)",
                         check=_eval_datasets),
    'epochs': Key(1000, INT, 'number of passes over the dataset', check=_positive),
    'max_steps': Key(None, INT, 'stop after this many optimizer steps (the LR schedule still spans all epochs unless '
                                "lr_schedule_steps = 'max_steps')", check=_positive),
    'seed': Key(42, INT, 'seed for shuffling, noise and timesteps; same seed = same run'),
    'micro_batch_size_per_gpu': Key(1, (int, list), 'batch per forward pass per GPU, or [[resolution, batch], ...]', check=_micro_batch),
    'image_micro_batch_size_per_gpu': Key(None, (int, list), 'batch size for images (frame bucket 1) in mixed training, '
                                          'or [[resolution, batch], ...] (default: micro_batch_size_per_gpu)', check=_micro_batch),
    'pipeline_stages': Key(1, INT, 'GPUs one model instance is split across', check=_positive),
    'gradient_accumulation_steps': Key(1, INT, 'micro-batches per optimizer step', check=_positive),
    'gradient_clipping': Key(1.0, NUM, 'clip the global gradient norm to this (0 = off)', check=_non_negative),
    'warmup_steps': Key(0, INT, 'linear learning-rate warm-up steps', check=_non_negative),
    'lr_scheduler': Key('constant', STR, 'learning-rate schedule after warm-up: linear decays to 0, cosine to lr_min',
                        choices=('constant', 'linear', 'cosine')),
    'lr_schedule_steps': Key('epochs', STR, "length of the decay after warm-up: 'epochs' = epochs x steps per epoch, as "
                             "diffusion-pipe (max_steps does not shorten it), or 'max_steps' = end the decay at the run's "
                             'last step (min of max_steps and the epochs)', choices=('epochs', 'max_steps')),
    'lr_min': Key(1e-6, NUM, "learning rate the cosine schedule ends at (diffusion-pipe's 1e-6; 0 = decay to zero)",
                  check=_non_negative),
    'force_constant_lr': Key(None, NUM, 'force this learning rate, also when resuming', check=_positive),
    'blocks_to_swap': Key(0, INT, 'transformer blocks kept in CPU memory, shared among pipeline stages (LoRA)', check=_non_negative),
    'pseudo_huber_c': Key(None, NUM, 'use pseudo-Huber loss with this c instead of MSE', check=_positive),
    'huber_delta': Key(None, NUM, 'use Huber loss with this delta instead of MSE (torch huber_loss)', check=_positive),
    'smooth_l1_beta': Key(None, NUM, 'use smooth L1 loss with this beta instead of MSE (torch smooth_l1_loss)', check=_positive),
    'uncond_fraction': Key(0.0, NUM, 'fraction of samples trained with an empty caption', check=_unit_interval),
    'eval_every_n_epochs': Key(None, INT, 'evaluate every n epochs', check=_positive),
    'eval_every_n_steps': Key(None, INT, 'evaluate every n steps', check=_positive),
    'eval_every_n_examples': Key(None, INT, 'evaluate every n examples', check=_positive),
    'eval_before_first_step': Key(True, BOOL, 'evaluate once before training starts (not when resuming)'),
    'eval_micro_batch_size_per_gpu': Key(None, (int, list), 'eval batch per GPU, or [[resolution, batch], ...] '
                                         '(default: micro_batch_size_per_gpu)', check=_micro_batch),
    'eval_image_micro_batch_size_per_gpu': Key(None, (int, list), 'eval batch for images (default: eval_micro_batch_size_per_gpu)',
                                               check=_micro_batch),
    'image_eval_micro_batch_size_per_gpu': Key(None, (int, list), 'the name diffusion-pipe\'s example uses for '
                                               'eval_image_micro_batch_size_per_gpu; taken as that key', check=_micro_batch),
    'eval_gradient_accumulation_steps': Key(1, INT, 'micro-batches per eval step', check=_positive),
    'disable_block_swap_for_eval': Key(False, BOOL, 'keep all blocks on the GPU while evaluating'),
    'save_every_n_epochs': Key(None, INT, 'save the adapter every n epochs', check=_positive),
    'save_every_n_steps': Key(None, INT, 'save the adapter every n steps', check=_positive),
    'save_every_n_examples': Key(None, INT, 'save the adapter every n examples', check=_positive),
    'checkpoint_every_n_epochs': Key(None, INT, 'resumable checkpoint every n epochs', check=_positive),
    'checkpoint_every_n_minutes': Key(None, NUM, 'resumable checkpoint every n minutes', check=_positive),
    'activation_checkpointing': Key(False, (bool, str), "recompute activations in backward: true, false or 'unsloth'"),
    'reentrant_activation_checkpointing': Key(False, BOOL, 'use the reentrant checkpoint implementation'),
    'partition_method': Key('parameters', STR, "how layers are split over pipeline stages: 'parameters', 'uniform' or 'manual'",
                            choices=('parameters', 'uniform', 'manual')),
    'partition_split': Key(None, LIST, "with partition_method = 'manual': the first layer of each stage after the first"),
    'save_dtype': Key('bfloat16', STR, 'dtype of saved adapters / models', choices=DTYPES),
    'caching_batch_size': Key(1, INT, 'batch size when encoding latents and text', check=_positive),
    'map_num_proc': Key(None, INT, 'decoding worker threads while caching (default min(8, cores))', check=_positive),
    'compile': Key(False, BOOL, 'torch.compile the transformer blocks'),
    'steps_per_print': Key(1, INT, "accepted and ignored: diffusion-pipe passes it to DeepSpeed's console log, "
                                   'here the progress bar and events.jsonl report every step', check=_positive),
    'logging_steps': Key(1, INT, 'write training scalars (loss, lr, grad norm) every n steps', check=_positive),
    'video_clip_mode': Key('single_beginning', STR, 'how clips are taken from a longer video', choices=CLIP_MODES),
    'x_axis_examples': Key(False, BOOL, 'TensorBoard x axis counts examples instead of steps'),
    'model': Key(MISSING, (dict,), '[model] table'),
    'adapter': Key(None, (dict,), '[adapter] table; absent = full fine-tune'),
    'optimizer': Key(MISSING, (dict,), '[optimizer] table'),
    'monitoring': Key({}, (dict,), '[monitoring] table'),
}

MODEL_KEYS = {
    'type': Key(MISSING, STR, 'model family', choices=('wan',)),
    'ckpt_path': Key(MISSING, STR, 'official Wan-AI checkpoint folder, or a Diffusers folder'),
    'transformer_path': Key(None, STR, 'transformer from elsewhere: a folder with config.json + safetensors, or a ComfyUI single file'),
    'llm_path': Key(None, STR, 'UMT5 text encoder file (official .pth or ComfyUI / wrapper safetensors)'),
    'dtype': Key('bfloat16', STR, 'compute dtype for all models', choices=DTYPES),
    'transformer_dtype': Key(None, STR, "storage dtype of frozen transformer weights, e.g. 'float8'", choices=DTYPES + FLOAT8),
    'timestep_sample_method': Key('logit_normal', STR, 'how training timesteps are drawn', choices=('logit_normal', 'uniform')),
    'sigmoid_scale': Key(1.0, NUM, 'scale of the normal before the sigmoid (logit_normal)', check=_positive),
    'shift': Key(None, NUM, 'timestep shift t -> t*s / (1 + (s-1)*t)', check=_positive),
    'flux_shift': Key(False, BOOL, 'resolution-dependent shift as Flux does'),
    'min_t': Key(0.0, NUM, 'lowest training timestep (0 = clean)', check=_unit_interval),
    'max_t': Key(1.0, NUM, 'highest training timestep (1 = noise)', check=_unit_interval),
    'cache_text_embeddings': Key(True, BOOL, 'cache text embeddings instead of running UMT5 each step'),
    'text_encoder_fp8': Key(False, BOOL, 'store the text encoder in float8'),
    'expert': Key(None, STR, "Wan2.2 A14B: 'high_noise', 'low_noise' or 'both' (default: transformer_path if set, else both)",
                  choices=('high_noise', 'low_noise', 'both')),
    'boundary': Key(None, NUM, 'Wan2.2 A14B: timestep where the high-noise expert takes over (default 0.875 t2v, 0.9 i2v)',
                    check=_unit_interval),
    # With the default timesteps (logit-normal, no shift) only ~2.6% (t2v) / ~1.4% (i2v) of the samples fall
    # at or above the boundary; the dataset report gives each expert's expected share.
    'expert_sampling': Key('timestep', STR, "Wan2.2 A14B, both experts: 'timestep' = each sample trains the expert "
                           "its timestep falls to; 'balanced' = pick the expert uniformly, then t inside its range",
                           choices=('timestep', 'balanced')),
}

ADAPTER_KEYS = {
    'type': Key('lora', STR, 'adapter kind', choices=('lora',)),
    'rank': Key(MISSING, INT, 'LoRA rank', check=_positive),
    'alpha': Key(None, NUM, 'LoRA alpha (default: equal to rank, i.e. scale 1)', check=_positive),
    'dtype': Key('bfloat16', STR, 'dtype of the trained LoRA weights', choices=DTYPES),
    'dropout': Key(0.0, NUM, 'LoRA dropout', check=_unit_interval),
    'init_from_existing': Key(None, STR, 'start from a saved LoRA (folder or adapter_model.safetensors)'),
    'exclude_modules': Key(None, (str, list), 'no LoRA on these modules: a regular expression matched against the whole '
                           'module name, or names matched exactly or as a name suffix (official Wan names such as '
                           "'blocks.0.ffn.0' or the Diffusers ones such as 'blocks.0.ffn.net.0.proj')", check=_exclude_modules),
}

OPTIMIZER_KEYS = {
    'type': Key(MISSING, STR, 'adamw, adamw8bit, AdamW8bitKahan, Prodigy, sgd, or any torch.optim class name'),
    'lr': Key(MISSING, NUM, 'learning rate', check=_positive),
    'betas': Key(None, LIST, 'Adam betas [b1, b2]'),
    'weight_decay': Key(None, NUM, 'decoupled weight decay', check=_non_negative),
    'eps': Key(None, NUM, 'numerical epsilon', check=_positive),
}

MONITORING_KEYS = {
    'enable_wandb': Key(False, BOOL, 'also log to Weights & Biases (needs the wandb package)'),
    'wandb_api_key': Key('', STR, 'W&B API key'),
    'wandb_tracker_name': Key('', STR, 'W&B project'),
    'wandb_run_name': Key('', STR, 'W&B run name'),
}

# Keys a [[directory]] entry may override, with the top-level default.
DATASET_SHARED_KEYS = {
    'resolutions': Key([512], LIST, 'training areas: side lengths (512) or [width, height] pairs', check=_resolutions),
    'enable_ar_bucket': Key(False, BOOL, 'group by aspect ratio; false (as diffusion-pipe) = one square bucket per '
                            'resolution, each file centre-cropped to it'),
    'min_ar': Key(0.5, NUM, 'smallest aspect ratio (width/height)', check=_positive),
    'max_ar': Key(2.0, NUM, 'largest aspect ratio', check=_positive),
    'num_ar_buckets': Key(7, INT, 'aspect-ratio buckets, log-spaced from min_ar to max_ar', check=_positive),
    'ar_buckets': Key(None, LIST, 'explicit aspect ratios or [width, height] pairs', check=_ar_buckets),
    'frame_buckets': Key([1], LIST, 'frame counts (4n+1); 1 is images', check=_frame_buckets),
    'size_buckets': Key(None, LIST, 'explicit [width, height, frames] buckets', check=_size_buckets),
    'caption_prefix': Key('', STR, 'text put before every caption'),
    'shuffle_tags': Key(False, BOOL, 'shuffle comma-separated tags'),
    'cache_shuffle_num': Key(0, INT, 'cached shuffled variants of each caption', check=_non_negative),
    'cache_shuffle_delimiter': Key(', ', STR, 'tag delimiter for shuffling'),
    'skip_empty_caption': Key(True, BOOL, 'drop files with no caption (false: train with an empty caption)'),
    'caption_dropout': Key(0.0, NUM, 'fraction of items whose caption is replaced by the empty one', check=_unit_interval),
    'num_repeats': Key(1, INT, 'times the data counts per epoch', check=_positive),
    'shuffle_metadata': Key(True, BOOL, 'accepted; no effect here: the batch order is shuffled from `seed` every epoch '
                            '(diffusion-pipe uses it to pre-shuffle a folder\'s file list)'),
}

DATASET_TOP_KEYS = {
    **DATASET_SHARED_KEYS,
    'directory': Key(MISSING, LIST, '[[directory]] entries'),
    'subsample_ratio': Key(None, NUM, 'train each epoch on this fraction of its global batches (the first ones of '
                           'the epoch\'s shuffled order)', check=_fraction),
    'eval_split': Key(None, NUM, "hold this share of the files out of training (chosen by seed and file name, the same "
                      "every run) and evaluate on them as the eval dataset 'heldout'", check=_share),
}

DIRECTORY_KEYS = {
    **{k: Key(None, v.types, v.doc, v.choices, v.check) for k, v in DATASET_SHARED_KEYS.items()},
    'path': Key(MISSING, STR, 'folder of images / videos and captions'),
    'mask_path': Key(None, STR, 'folder of masks with the same file names (white = train, black = ignore)'),
    'metadata_file': Key(None, STR, 'metadata CSV/JSON with video|image and prompt columns (default: metadata.csv/.json in path)'),
    'default_mask_file': Key(None, STR, 'mask image for files that have no mask in mask_path (also without mask_path); '
                             'resized and centre-cropped to each file\'s bucket'),
}


# --------------------------------------------------------------------------------------------
# Checking
# --------------------------------------------------------------------------------------------

def nearest_key(name, known):
    match = difflib.get_close_matches(name, list(known), n=1, cutoff=0.5)
    return match[0] if match else None


def _type_ok(value, types):
    if not types:
        return True
    if isinstance(value, bool) and bool not in types:
        return False
    if float in types and isinstance(value, int):
        return True
    return isinstance(value, types)


def _type_name(types):
    names = {int: 'an integer', float: 'a number', bool: 'true or false', str: 'a string', list: 'a list', dict: 'a table'}
    return ' or '.join(names.get(t, t.__name__) for t in types)


def check_table(table, keys, file, prefix, issues):
    """Check one TOML table against its key declarations; return it with defaults filled in."""
    out = {}
    if not isinstance(table, dict):
        issues.append(ConfigIssue(file, prefix.rstrip('.') or '(file)', table, 'must be a table'))
        return out
    for name, value in table.items():
        if name not in keys:
            near = nearest_key(name, keys)
            hint = f"; did you mean '{near}'?" if near else ''
            issues.append(ConfigIssue(file, prefix + name, value, f'unknown key{hint}'))
    for name, key in keys.items():
        if name not in table:
            if key.default is MISSING:
                issues.append(ConfigIssue(file, prefix + name, MISSING, 'is required'))
            else:
                out[name] = key.default
            continue
        value = table[name]
        if not _type_ok(value, key.types):
            issues.append(ConfigIssue(file, prefix + name, value, f'must be {_type_name(key.types)}'))
            continue
        if key.choices and value not in key.choices:
            near = nearest_key(str(value), [str(c) for c in key.choices])
            hint = f"; did you mean '{near}'?" if near else ''
            issues.append(ConfigIssue(file, prefix + name, value, f'must be one of {", ".join(map(repr, key.choices))}{hint}'))
            continue
        if key.check and (err := key.check(value)):
            issues.append(ConfigIssue(file, prefix + name, value, err))
            continue
        out[name] = value
    return out


def _resolve_path(value, base_dir):
    if value is None:
        return None
    p = Path(os.path.expanduser(value))
    return str(p if p.is_absolute() else (Path(base_dir) / p))


def read_toml(path):
    """Parse a TOML file; a syntax error becomes a ConfigError naming the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding='utf-8')
    except FileNotFoundError:
        raise ConfigError([ConfigIssue(str(path), '(file)', MISSING, 'file not found')]) from None
    except UnicodeDecodeError as e:
        raise ConfigError([ConfigIssue(str(path), '(file)', MISSING, f'not UTF-8 text ({e.reason} at byte {e.start})')]) from None
    return parse_toml_text(text, str(path))


def parse_toml_text(text, file):
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([ConfigIssue(file, '(syntax)', MISSING, str(e))]) from None


def validate_main(raw: dict, file: str = 'config.toml', base_dir: str | None = None, world_size: int | None = None):
    """Check a parsed main config. Returns (resolved config, issues). Never raises for bad values."""
    issues = []
    base_dir = base_dir or (str(Path(file).parent) if file else '.')
    cfg = check_table(raw, MAIN_KEYS, file, '', issues)
    for section, keys in (('model', MODEL_KEYS), ('adapter', ADAPTER_KEYS), ('monitoring', MONITORING_KEYS)):
        if cfg.get(section) is not None:
            cfg[section] = check_table(cfg[section], keys, file, f'{section}.', issues)
    if cfg.get('optimizer') is not None:
        cfg['optimizer'] = _check_optimizer(cfg['optimizer'], file, issues)

    # Cross-key rules, checked only where the keys themselves were valid.
    if cfg.get('checkpoint_every_n_epochs') and cfg.get('checkpoint_every_n_minutes'):
        issues.append(ConfigIssue(file, 'checkpoint_every_n_minutes', cfg['checkpoint_every_n_minutes'],
                                  'set only one of checkpoint_every_n_epochs and checkpoint_every_n_minutes'))
    stages = cfg.get('pipeline_stages')
    if stages and world_size is not None:
        if stages > world_size:
            issues.append(ConfigIssue(file, 'pipeline_stages', stages,
                                      f'larger than the {world_size} process(es) this run has; use at most {world_size} or launch more GPUs'))
        elif world_size % stages:
            issues.append(ConfigIssue(file, 'pipeline_stages', stages,
                                      f'must divide the number of processes ({world_size}); the rest is data parallelism'))
    if cfg.get('partition_method') == 'manual':
        split = cfg.get('partition_split')
        if not isinstance(split, list) or len(split) != (stages or 1) - 1 or not all(isinstance(x, int) and x > 0 for x in split) \
                or split != sorted(set(split)):
            issues.append(ConfigIssue(file, 'partition_split', split,
                                      f"partition_method = 'manual' needs {max((stages or 1) - 1, 0)} increasing layer indices"))
    ac = cfg.get('activation_checkpointing')
    if isinstance(ac, str) and ac != 'unsloth':
        issues.append(ConfigIssue(file, 'activation_checkpointing', ac, "must be true, false or 'unsloth'"))
    losses = [k for k in LOSS_KEYS if cfg.get(k) is not None]
    if len(losses) > 1:
        issues.append(ConfigIssue(file, losses[1], cfg[losses[1]],
                                  f'set only one of {", ".join(LOSS_KEYS)}: each picks the loss ({losses[0]} is set too)'))
    alias = 'image_eval_micro_batch_size_per_gpu'
    if cfg.get(alias) is not None:
        if cfg.get('eval_image_micro_batch_size_per_gpu') is not None:
            issues.append(ConfigIssue(file, alias, cfg[alias], 'another name of eval_image_micro_batch_size_per_gpu, '
                                                              'which is set too; keep one'))
        else:
            cfg['eval_image_micro_batch_size_per_gpu'] = cfg[alias]
    if isinstance(cfg.get('eval_datasets'), list):
        # diffusion-pipe takes a bare path as well, and names it by its position.
        cfg['eval_datasets'] = [{'name': f'eval{i}', 'config': e} if isinstance(e, str) else e
                                for i, e in enumerate(cfg['eval_datasets'])]
    model = cfg.get('model') or {}
    if 'min_t' in model and 'max_t' in model and model['min_t'] >= model['max_t']:
        issues.append(ConfigIssue(file, 'model.max_t', model['max_t'], f'must be greater than min_t ({model["min_t"]})'))
    if cfg.get('blocks_to_swap'):
        if cfg.get('adapter') is None and 'adapter' not in raw:
            issues.append(ConfigIssue(file, 'blocks_to_swap', cfg['blocks_to_swap'], 'block swapping works for LoRA training only'))
    mon = cfg.get('monitoring') or {}
    if mon.get('enable_wandb'):
        try:
            import wandb  # noqa: F401
        except ImportError:
            issues.append(ConfigIssue(file, 'monitoring.enable_wandb', True,
                                      'the wandb package is not installed; TensorBoard logs are in <run>/tensorboard'))

    # Paths resolve against the config file's folder, as diffusion-pipe users expect.
    for key in ('output_dir', 'dataset'):
        if isinstance(cfg.get(key), str):
            cfg[key] = _resolve_path(cfg[key], base_dir)
    for entry in cfg.get('eval_datasets') or []:
        if isinstance(entry, dict) and isinstance(entry.get('config'), str):
            entry['config'] = _resolve_path(entry['config'], base_dir)
    for key in ('ckpt_path', 'transformer_path', 'llm_path'):
        if isinstance(model.get(key), str):
            model[key] = _resolve_path(model[key], base_dir)
    adapter = cfg.get('adapter') or {}
    if isinstance(adapter.get('init_from_existing'), str):
        adapter['init_from_existing'] = _resolve_path(adapter['init_from_existing'], base_dir)
    if adapter and adapter.get('alpha') is None and 'rank' in adapter:
        adapter['alpha'] = adapter['rank']
    if cfg.get('eval_micro_batch_size_per_gpu') is None and cfg.get('micro_batch_size_per_gpu') is not None:
        cfg['eval_micro_batch_size_per_gpu'] = cfg['micro_batch_size_per_gpu']
    return cfg, issues


def _check_optimizer(table, file, issues):
    """Known keys are checked here; extra keys must be arguments of the chosen optimizer."""
    if not isinstance(table, dict):
        issues.append(ConfigIssue(file, 'optimizer', table, 'must be a table'))
        return {}
    known = {k: v for k, v in table.items() if k in OPTIMIZER_KEYS}
    out = check_table(known, OPTIMIZER_KEYS, file, 'optimizer.', issues)
    extra = {k: v for k, v in table.items() if k not in OPTIMIZER_KEYS}
    betas = out.get('betas')
    if betas is not None and not (len(betas) == 2 and all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas)):
        issues.append(ConfigIssue(file, 'optimizer.betas', betas, 'must be two numbers in [0, 1)'))
    if 'type' in out:
        from optimizers import optimizer_arguments
        try:
            accepted = optimizer_arguments(out['type'])
        except KeyError as e:
            issues.append(ConfigIssue(file, 'optimizer.type', out['type'], str(e.args[0])))
            accepted = None
        if accepted is not None:
            for name in list(OPTIMIZER_KEYS):
                if name not in ('type', 'lr') and name in table and name not in accepted:
                    issues.append(ConfigIssue(file, f'optimizer.{name}', table[name], f"not an argument of {out['type']}"))
            for name, value in extra.items():
                if name not in accepted:
                    near = nearest_key(name, accepted)
                    hint = f"; did you mean '{near}'?" if near else ''
                    issues.append(ConfigIssue(file, f'optimizer.{name}', value, f"unknown key for {out['type']}{hint}"))
                else:
                    out[name] = value
    return out


def check_media_sizes(dataset_cfg, size_multiple, file, issues):
    """Resolutions and explicit buckets must be multiples of the model's size step (16, or 32 for ti2v-5B)."""
    tables = [('', dataset_cfg)] + [(f'directory[{i}].', d) for i, d in enumerate(dataset_cfg.get('directory', []))]
    for prefix, table in tables:
        for r in table.get('resolutions') or []:
            sides = r if isinstance(r, list) else [r]
            if any(int(s) != s or int(s) % size_multiple for s in sides):
                issues.append(ConfigIssue(file, prefix + 'resolutions', table['resolutions'],
                                          f'{r} is not a multiple of {size_multiple}; this model needs sides divisible by {size_multiple}'))
                break
        for b in table.get('size_buckets') or []:
            if b[0] % size_multiple or b[1] % size_multiple:
                issues.append(ConfigIssue(file, prefix + 'size_buckets', table['size_buckets'],
                                          f'{b[0]}x{b[1]} is not a multiple of {size_multiple}'))
                break


def validate_dataset(raw: dict, file: str = 'dataset.toml', base_dir: str | None = None, size_multiple: int = 16):
    """Check a parsed dataset config. Returns (resolved config, issues); [[directory]] entries inherit top-level keys."""
    issues = []
    base_dir = base_dir or (str(Path(file).parent) if file else '.')
    cfg = check_table(raw, DATASET_TOP_KEYS, file, '', issues)
    dirs = []
    for i, entry in enumerate(cfg.get('directory') or []):
        d = check_table(entry, DIRECTORY_KEYS, file, f'directory[{i}].', issues)
        for name in DATASET_SHARED_KEYS:
            if d.get(name) is None:
                d[name] = cfg.get(name, DATASET_SHARED_KEYS[name].default)
        for key in ('path', 'mask_path', 'metadata_file', 'default_mask_file'):
            if isinstance(d.get(key), str):
                d[key] = _resolve_path(d[key], base_dir)
        if d.get('min_ar') and d.get('max_ar') and d['min_ar'] > d['max_ar']:
            issues.append(ConfigIssue(file, f'directory[{i}].max_ar', d['max_ar'], f'must be at least min_ar ({d["min_ar"]})'))
        dirs.append(d)
    if 'directory' in cfg:
        cfg['directory'] = dirs
        if not dirs and 'directory' in raw:
            issues.append(ConfigIssue(file, 'directory', [], 'needs at least one [[directory]] entry'))
    if cfg.get('min_ar') and cfg.get('max_ar') and cfg['min_ar'] > cfg['max_ar']:
        issues.append(ConfigIssue(file, 'max_ar', cfg['max_ar'], f'must be at least min_ar ({cfg["min_ar"]})'))
    check_media_sizes(cfg, size_multiple, file, issues)
    return cfg, issues


def load_main_config(path, world_size: int | None = None):
    path = Path(path)
    cfg, issues = validate_main(read_toml(path), str(path), str(path.parent), world_size)
    if issues:
        raise ConfigError(issues)
    return cfg


def load_dataset_config(path, size_multiple: int = 16):
    path = Path(path)
    cfg, issues = validate_dataset(read_toml(path), str(path), str(path.parent), size_multiple)
    if issues:
        raise ConfigError(issues)
    return cfg


def describe_keys():
    """Key reference (section, key, default, doc) for the README and the studio's form hints."""
    rows = []
    for section, keys in (('', MAIN_KEYS), ('model', MODEL_KEYS), ('adapter', ADAPTER_KEYS), ('optimizer', OPTIMIZER_KEYS),
                          ('monitoring', MONITORING_KEYS), ('dataset', DATASET_TOP_KEYS), ('dataset.directory', DIRECTORY_KEYS)):
        for name, key in keys.items():
            default = 'required' if key.default is MISSING else key.default
            rows.append({'section': section, 'key': name, 'default': default, 'doc': key.doc,
                         'choices': list(key.choices)})
    return rows
