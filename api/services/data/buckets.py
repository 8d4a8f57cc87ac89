"""Which bucket every file of a dataset trains in (or why it is dropped), through the trainer's own code.

    view = bucket_view(folder, datasets_root, settings={'resolutions': [512], 'frame_buckets': [1, 33]},
                       options={'variant': 'wan2.1-t2v-1.3b', 'micro_batch_size': 1, 'gpus': 2})
    view['files'][0]            # {'name', 'status', 'reason', 'buckets': ['512x512x33'], 'scale': 1.9, ...}
                                # scale: the largest enlargement to cover its buckets (> 1: upscaled)
    view['steps_per_epoch']     # utils.dataset.steps_per_epoch, as train.py reports it
    save_config(folder, datasets_root, settings, variant)   # -> <folder>/dataset.toml, validated

The dataset config is the folder's own dataset.toml (or the studio's default draft pointing at the
folder) with `settings` laid over its top-level keys; it is checked by utils.config.validate_dataset,
turned into items by utils.dataset.build_dataset and counted by steps_per_epoch: the same calls
train.py --dump_dataset makes, so the two never disagree. Suggestions (aspect-ratio and frame buckets)
are computed from the probed media of the report.
"""

import math
import re
import tomllib
from pathlib import Path

from models.wan.variants import VARIANTS
from utils.buckets import AR_DECIMALS
from utils.config import CLIP_MODES, DATASET_TOP_KEYS, MISSING, validate_dataset
from utils.dataset import bucket_label, build_dataset, steps_per_epoch
from utils.fsutil import atomic_write_text

from ..errors import BadRequest, Invalid
from ..paths import within_any
from ..training.form import DEFAULT_DATASET, DIRECTORY_PATH_KEYS, dump

DEFAULT_VARIANT = 'wan2.1-t2v-1.3b'
SETTING_KEYS = tuple(k for k in DATASET_TOP_KEYS if k != 'directory')
AR_CLUSTER = math.log(1.08)         # aspect ratios closer than 8% share a suggested bucket
MAX_AR_SUGGESTIONS = 7
SUGGEST_SECONDS = 5.0               # longest suggested frame bucket: this many seconds at the model rate
HEADER = '# Dataset settings written by ODEO Studio (Data area); every key is documented in examples/dataset.toml.\n'


def media_spec(variant_id):
    """The MediaSpec a variant's adapter reports (WanVariant.media_spec)."""
    v = VARIANTS.get(variant_id)
    if v is None:
        raise BadRequest(f'variant {variant_id!r} is unknown; one of {", ".join(VARIANTS)}', field='variant')
    return v.media_spec()


def settings_of(doc):
    """The top-level dataset settings a document sets (everything but its [[directory]] entries)."""
    return {k: doc[k] for k in SETTING_KEYS if k in doc}


def own_document(folder: Path):
    """The folder's dataset.toml as a document (None when absent), or raises Invalid on a syntax error."""
    path = folder / 'dataset.toml'
    if not path.is_file():
        return None
    try:
        return tomllib.loads(path.read_text(encoding='utf-8'))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise Invalid(f'{path}: {e}', field='settings') from None


def effective_document(folder: Path, settings=None):
    """Own dataset.toml (or the default draft with path '.') with `settings` over its top-level keys."""
    doc = own_document(folder)
    if doc is None:
        doc = tomllib.loads(DEFAULT_DATASET.replace('{dataset}', "'.'"))
    if settings is not None:
        if not isinstance(settings, dict):
            raise BadRequest('settings must be an object of dataset keys', field='settings')
        unknown = sorted(set(settings) - set(SETTING_KEYS))
        if unknown:
            raise BadRequest(f'unknown dataset setting(s) {", ".join(unknown)}; known: {", ".join(SETTING_KEYS)}',
                             field='settings')
        for k, v in settings.items():
            if v is None or v == '':
                doc.pop(k, None)
            else:
                doc[k] = v
    return doc


def check_document(doc, folder: Path, datasets_root, size_multiple):
    """(resolved config, issues as {key, value, message}) with every directory kept under datasets_root."""
    cfg, issues = validate_dataset(doc, str(folder / 'dataset.toml'), str(folder), size_multiple)
    out = [{'key': i.key, 'value': None if i.value is MISSING else i.value, 'message': i.message} for i in issues
           if not _inherited(i.key, doc)]
    for i, d in enumerate(cfg.get('directory') or []):
        for key in DIRECTORY_PATH_KEYS:
            if isinstance(d.get(key), str) and not within_any(d[key], [datasets_root]):
                out.append({'key': f'directory[{i}].{key}', 'value': doc['directory'][i].get(key),
                            'message': 'must stay inside the datasets folder'})
    return cfg, out


def _inherited(key, doc):
    """True for 'directory[0].resolutions' when that entry does not set the key itself (the top-level
    value it inherits is reported once, under its own name)."""
    m = re.fullmatch(r'directory\[(\d+)\]\.(\w+)', key)
    dirs = doc.get('directory') if isinstance(doc.get('directory'), list) else []
    if not m or int(m.group(1)) >= len(dirs) or not isinstance(dirs[int(m.group(1))], dict):
        return False
    return m.group(2) not in dirs[int(m.group(1))] and m.group(2) in doc


def _int_option(options, name, default, minimum=1):
    v = options.get(name, default)
    if v is None:
        return default
    if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
        raise BadRequest(f'{name} must be a whole number of at least {minimum}', field=name)
    return v


def read_options(options, default_variant=DEFAULT_VARIANT):
    """Training options that change the report: variant, clip mode, batch sizes, processes, seed."""
    options = options or {}
    clip_mode = options.get('video_clip_mode') or 'single_beginning'
    if clip_mode not in CLIP_MODES:
        raise BadRequest(f'video_clip_mode must be one of {", ".join(CLIP_MODES)}', field='video_clip_mode')
    image_mbs = _int_option(options, 'image_micro_batch_size', None)
    gpus = _int_option(options, 'gpus', 1)
    stages = _int_option(options, 'pipeline_stages', 1)
    return {'variant': options.get('variant') or default_variant, 'video_clip_mode': clip_mode,
            'micro_batch_size': _int_option(options, 'micro_batch_size', 1), 'image_micro_batch_size': image_mbs,
            'gradient_accumulation_steps': _int_option(options, 'gradient_accumulation_steps', 1),
            'gpus': gpus, 'pipeline_stages': stages, 'dp_world': max(1, gpus // stages),
            'seed': _int_option(options, 'seed', 42, minimum=0)}


def build_report(folder: Path, datasets_root, settings=None, options=None, default_variant=DEFAULT_VARIANT):
    """(report or None, issues, options, settings document) for the folder under these settings."""
    opts = read_options(options, default_variant)
    spec = media_spec(opts['variant'])
    doc = effective_document(folder, settings)
    cfg, issues = check_document(doc, folder, datasets_root, spec.size_multiple)
    if issues:
        return None, issues, opts, doc
    ds = build_dataset(cfg, spec, opts['video_clip_mode'], seed=opts['seed'])
    ds.report['batching'] = steps_per_epoch(ds.report, opts['micro_batch_size'], opts['image_micro_batch_size'],
                                            opts['dp_world'], opts['gradient_accumulation_steps'])
    return ds.report, [], opts, doc


def bucket_view(folder: Path, datasets_root, settings=None, options=None, default_variant=DEFAULT_VARIANT):
    report, issues, opts, doc = build_report(folder, datasets_root, settings, options, default_variant)
    view = {'variant': opts['variant'], 'options': opts, 'settings': settings_of(doc),
            'has_config': (folder / 'dataset.toml').is_file(), 'issues': issues,
            'variants': [{'id': v.id, 'framerate': v.framerate, 'size_multiple': v.size_multiple} for v in VARIANTS.values()]}
    if report is None:
        return {**view, 'totals': None, 'buckets': [], 'files': [], 'problems': [], 'steps_per_epoch': None,
                'dropped_per_epoch': None, 'suggestions': None}
    batching = report['batching']
    rows = {tuple(r['bucket']): r for r in batching['buckets']}
    buckets = [{**b, **{k: rows[tuple(b['bucket'])][k] for k in ('micro_batch', 'global_batch', 'steps', 'dropped')}}
               for b in report['buckets']]
    files = [{'name': f['name'], 'path': f['path'], 'directory': f['directory'], 'kind': f['kind'],
              'status': f['status'], 'reason': f['reason'], 'media': f['media'], 'caption_source': f['caption_source'],
              'buckets': [bucket_label(b['bucket']) for b in f['buckets']],
              'clips': sum(len(b['clip_starts']) for b in f['buckets']), 'notes': f['notes'],
              'scale': max((b['scale'] for b in f['buckets']), default=None),
              'bucket_scales': {bucket_label(b['bucket']): b['scale'] for b in f['buckets']}}
             for f in report['files']]
    spec = report['spec']
    return {**view, 'spec': spec, 'totals': report['totals'], 'buckets': buckets, 'files': files,
            'problems': report['problems'], 'steps_per_epoch': batching['steps'],
            'dropped_per_epoch': batching['dropped_per_epoch'], 'suggestions': suggest(report, spec['framerate'])}


# ---- suggestions ------------------------------------------------------------------------------------

def _four_n_plus_one(frames):
    return max(1, (int(frames) - 1) // 4 * 4 + 1)


def suggest(report, framerate):
    """Aspect-ratio buckets from the clusters of the files' aspect ratios, and frame buckets from their
    lengths at the model frame rate (shortest, median, 90th percentile, as 4n+1, at most SUGGEST_SECONDS)."""
    media = [f['media'] for f in report['files'] if f.get('media')]
    if not media:
        return {'ar_buckets': [], 'min_ar': None, 'max_ar': None, 'frame_buckets': [], 'notes': ['no readable media']}
    ars = sorted(m['width'] / m['height'] for m in media)
    clusters = []
    for ar in ars:
        if clusters and math.log(ar) - math.log(clusters[-1][0]) <= AR_CLUSTER:
            clusters[-1].append(ar)
        else:
            clusters.append([ar])
    top = sorted(clusters, key=len, reverse=True)[:MAX_AR_SUGGESTIONS]
    ar_buckets = sorted(round(c[len(c) // 2], AR_DECIMALS) for c in top)
    notes = [f'{len(c)} file(s) near aspect ratio {round(c[len(c) // 2], 2)}' for c in sorted(top, key=lambda c: c[0])]
    lengths = sorted(m['frames_at_model_fps'] for m in media if m['frames'] > 1)
    cap = _four_n_plus_one(SUGGEST_SECONDS * framerate + 1)          # 81 at 16 fps, 121 at 24
    frames = set()
    if lengths:
        for q in (0.0, 0.5, 0.9):
            frames.add(min(cap, _four_n_plus_one(lengths[int(q * (len(lengths) - 1))])))
        frames.discard(1)
        too_short = sum(1 for n in lengths if n < 5)
        if too_short:
            notes.append(f'{too_short} video(s) are shorter than 5 frames at {framerate:g} fps and cannot train as video')
    if any(m['frames'] == 1 for m in media):
        frames.add(1)
    return {'ar_buckets': ar_buckets, 'min_ar': round(ars[0], AR_DECIMALS), 'max_ar': round(ars[-1], AR_DECIMALS),
            'frame_buckets': sorted(frames), 'notes': notes}


# ---- writing dataset.toml ---------------------------------------------------------------------------

def save_config(folder: Path, datasets_root, settings, variant=DEFAULT_VARIANT):
    """Validate and write <folder>/dataset.toml (atomically). Raises Invalid listing the issues."""
    spec = media_spec(variant)
    doc = effective_document(folder, settings)
    if not doc.get('directory'):
        doc['directory'] = [{'path': '.'}]
    _, issues = check_document(doc, folder, datasets_root, spec.size_multiple)
    if issues:
        first = issues[0]
        raise Invalid(f'dataset.toml would have {len(issues)} problem(s); first: {first["key"]}: {first["message"]}',
                      field='settings', issues=[{'file': 'dataset.toml', 'field': None, **i} for i in issues])
    text = HEADER + dump(doc)
    atomic_write_text(folder / 'dataset.toml', text)
    return {'path': str(folder / 'dataset.toml'), 'toml': text, 'settings': settings_of(doc)}
