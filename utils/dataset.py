"""Datasets: files -> captions -> buckets -> clips -> items, the report a person reads, and batching.

    spec = MediaSpec(framerate=16, size_multiple=16)              # from the model adapter
    ds = build_dataset(load_dataset_config('dataset.toml'), spec, 'single_beginning', seed=42)
    print(format_report(ds.report))                               # what trains where, what was dropped and why
    ds.steps_per_epoch(micro_batch_size=1, image_micro_batch_size=4, dp_world=2, grad_accum=1)
    batches = epoch_batches(ds, micro_batch_size_fn(1, 4), dp_world=2, grad_accum=1, seed=42, epoch=1)

Building probes files only (no decoding beyond one frame, no model); probe results are remembered in
`<directory>/cache/probe.json` by path, size and mtime. Bucket maths is in utils/buckets.py, caption
sources and their precedence in utils/captions.py.

Drop rules (each dropped file is listed in the report with its reason):
- unreadable: the file is not a usable image / video (utils.media.probe says why);
- caption problems: no caption while skip_empty_caption = true, or a caption file that cannot be read;
- too short: a video shorter than the smallest video frame bucket at the model frame rate;
- too small: a bucket would need more than MAX_UPSCALE (2x) enlargement on a side. The file skips
  that bucket (noted); with no bucket left it is dropped;
- mask problems: an unreadable mask, or one whose aspect ratio differs from its media by > 1%;
- image-to-video models (spec.needs_video) drop images.
Files with other extensions are listed as 'ignored'. caption_dropout replaces the captions of
round(fraction * files) files per directory, chosen by the seed, with the empty caption.
"""

import hashlib
import math
import random
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

from utils.buckets import BucketPlan, Drop, clip_starts
from utils.captions import (CAPTIONS_JSON, METADATA_NAMES, CaptionError, caption_variants, find_captions,
                            load_sources)
from utils.media import MediaError, MediaInfo, frames_at_fps, media_kind, probe_many

MAX_UPSCALE = 2.0                  # largest enlargement per side before a file is too small for a bucket
MASK_AR_TOLERANCE = 0.01           # allowed relative aspect-ratio difference between a mask and its media
SIDECAR_SUFFIXES = {'.txt', '.json', '.jsonl', '.csv', '.toml', '.md'}   # companions, not media: never reported
REPORT_VERSION = 1


@dataclass(frozen=True)
class MediaSpec:
    framerate: float               # model frame rate: 16 for Wan2.1, 24 for Wan2.2 ti2v-5B
    size_multiple: int             # width and height must be multiples of this: 16, or 32 for ti2v-5B
    needs_video: bool = False      # image-to-video models train on clips only: images are dropped


@dataclass
class DatasetItem:
    id: str                        # stable: hash of directory, relative path, bucket, clip start, resolution
    path: str                      # media file
    captions: list                 # caption variants ([''] when dropped for unconditional training)
    bucket: tuple                  # (width, height, frames)
    clip_start: int                # first frame at the model frame rate (0 for images)
    mask_path: str | None
    repeats: int                   # num_repeats of its directory
    directory: int                 # index of its [[directory]]
    kind: str                      # 'image' | 'video'
    fps: float                     # model frame rate the clip is read at
    resolution: str                # resolutions entry it came from ('512', '1280x720', 'size_bucket')

    def to_dict(self):
        d = asdict(self)
        d['bucket'] = list(self.bucket)
        return d


class Dataset:
    def __init__(self, items, report, spec):
        self.items = items
        self.report = report
        self.spec = spec
        self.by_id = {it.id: it for it in items}

    def steps_per_epoch(self, micro_batch_size=1, image_micro_batch_size=None, dp_world=1, grad_accum=1):
        """Global steps per epoch; also stored as report['batching']."""
        self.report['batching'] = steps_per_epoch(self.report, micro_batch_size, image_micro_batch_size, dp_world, grad_accum)
        return self.report['batching']['steps']

    def drop(self, failures, gone=None):
        """Take in what the cache build found (BuildResult.failed, BuildResult.gone): items that failed
        ({item id: reason}) leave the dataset, and files cached earlier but missing now ({path: reason})
        are listed as dropped. The report follows."""
        known = {f['path'] for f in self.report['files']}
        for path, reason in sorted((gone or {}).items()):
            if path not in known:
                i = next((d['index'] for d in self.report['directories'] if Path(path).parent == Path(d['path'])), None)
                folder = Path(self.report['directories'][i]['path']) if i is not None else Path(path).parent
                self.report['files'].append(_file_entry(i, folder, Path(path), 'dropped', reason))
        failures = failures or {}
        self.items = [it for it in self.items if it.id not in failures]
        self.by_id = {it.id: it for it in self.items}
        for entry in self.report['files']:
            ids = set(entry.get('item_ids', []))
            failed = sorted({failures[i] for i in ids if i in failures})
            if not failed:
                continue
            entry['item_ids'] = [i for i in entry['item_ids'] if i not in failures]
            if not entry['item_ids']:
                entry['status'], entry['reason'], entry['buckets'] = 'dropped', f'unreadable: {failed[0]}', []
            else:
                entry['notes'].append(f'{len(ids) - len(entry["item_ids"])} clip(s) failed: {failed[0]}')
        _summarize(self.report, self.items)


# --------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------

def item_id(directory_index, folder, rel, bucket, clip_start, resolution):
    key = f'{directory_index}|{folder}|{rel}|{bucket[0]}x{bucket[1]}x{bucket[2]}|{clip_start}|{resolution}'
    return hashlib.sha256(key.encode('utf-8')).hexdigest()[:20]


def _list_directory(i, d, report):
    """(folder, [media paths], caption sources, mask index) of one [[directory]]; problems go to the report."""
    folder = Path(d['path'])
    if not folder.is_dir():
        report['problems'].append(f'directory[{i}].path: folder not found: {folder}')
        return folder, [], None, None
    sources = load_sources(folder, d.get('metadata_file'))
    report['problems'].extend(f'{folder}: {p}' for p in sources.problems)
    media = []
    skip = {CAPTIONS_JSON, *METADATA_NAMES}
    for p in sorted(folder.iterdir()):
        if p.name.startswith('.') or not p.is_file() or p.name in skip or p.suffix.lower() in SIDECAR_SUFFIXES:
            continue
        if media_kind(p) is None:
            report['files'].append(_file_entry(i, folder, p, 'ignored', f"not a media file (extension '{p.suffix}')"))
            continue
        media.append(p)
    seen = set(media)
    for p in sorted(p for p in sources.listed if p not in seen):
        if media_kind(p) is None:
            report['files'].append(_file_entry(i, folder, p, 'ignored', f"{sources.listed[p]} names a file that is not "
                                                                       f"media (extension '{p.suffix}')"))
        else:
            media.append(p)
    masks = None
    default_mask = d.get('default_mask_file')
    if default_mask and not Path(default_mask).is_file():
        report['problems'].append(f'directory[{i}].default_mask_file: file not found: {default_mask}')
        d['default_mask_file'] = None
    if d.get('mask_path'):
        mask_folder = Path(d['mask_path'])
        if not mask_folder.is_dir():
            report['problems'].append(f'directory[{i}].mask_path: folder not found: {mask_folder}')
        else:
            masks = {p.stem: p for p in sorted(mask_folder.iterdir()) if p.is_file() and media_kind(p) == 'image'}
    return folder, media, sources, masks


def files_read(dataset_cfg):
    """(directory index, path, what names it) for every file building this dataset may open: the files
    of each folder (media, sidecar captions, captions.json, metadata tables), the files metadata rows name, the
    metadata_file and the masks; from the same listing and parsers build_dataset uses."""
    report = {'problems': [], 'files': []}
    for i, d in enumerate(dataset_cfg.get('directory') or []):
        if not d.get('path'):
            continue
        folder, _, sources, masks = _list_directory(i, d, report)
        if sources is None:
            continue
        if d.get('metadata_file'):
            yield i, Path(d['metadata_file']), f'directory[{i}].metadata_file'
        for p in sorted(folder.iterdir()):
            if p.is_file():
                yield i, p, f'{folder.name}/{p.name}'
        for p, row in sources.listed.items():
            yield i, p, row
        for p in (masks or {}).values():
            yield i, p, f'directory[{i}].mask_path'


def _file_entry(i, folder, path, status, reason=None):
    try:
        name = path.relative_to(folder).as_posix()
    except ValueError:
        name = str(path)
    return {'directory': i, 'name': name, 'path': str(path), 'kind': media_kind(path), 'status': status,
            'reason': reason, 'media': None, 'caption_source': None, 'buckets': [], 'notes': [], 'item_ids': []}


def _captions_for(entry, d, sources, path, seed):
    """Caption variants for a file, or raises Drop."""
    try:
        captions, label = find_captions(sources, path)
    except CaptionError as e:
        raise Drop(f'caption {e}') from None
    entry['caption_source'] = label
    if captions is None or not any(c.strip() for c in captions):
        why = 'no caption' if captions is None else f'empty caption ({label})'
        if d['skip_empty_caption']:
            raise Drop(why)
        entry['notes'].append(f'{why}: trained with an empty caption (skip_empty_caption = false)')
        return ['']
    captions = [c for c in captions if c.strip()]
    shuffles = d['cache_shuffle_num'] or (1 if d['shuffle_tags'] else 0)
    return caption_variants(captions, d['caption_prefix'], shuffles, d['cache_shuffle_delimiter'], f'{seed}|{entry["name"]}')


def _mask_for(entry, masks, info, probes, default_mask=None):
    if masks is None and default_mask is None:
        return None
    mask = masks.get(Path(entry['path']).stem) if masks is not None else None
    if mask is None and default_mask is not None:
        # Any shape: read_mask fits it to each bucket as the media is fitted (resize, centre crop).
        entry['notes'].append('masked with default_mask_file')
        return default_mask
    if mask is None:
        entry['notes'].append('no mask with this name in mask_path: trained unmasked')
        return None
    m = probes.get(mask)
    if isinstance(m, MediaError):
        raise Drop(f'mask {mask.name} unreadable: {m.reason}')
    if abs(m.width / m.height - info.width / info.height) > MASK_AR_TOLERANCE * info.width / info.height:
        raise Drop(f'mask {mask.name} is {m.width}x{m.height}, its media {info.width}x{info.height}: aspect ratios differ')
    return str(mask)


def upscale(info, bucket):
    """How much a file is enlarged to cover a (width, height, frames) bucket (read_media scales to cover,
    then crops): above 1 it is upscaled, at most 1 it is not."""
    return max(bucket[0] / info.width, bucket[1] / info.height)


def _fitting(entry, info, assignments):
    """Assignments this file is large enough for (at most MAX_UPSCALE per side); raises Drop if none."""
    def scale(a):
        return upscale(info, a.bucket)

    ok = [a for a in assignments if scale(a) <= MAX_UPSCALE + 1e-9]
    if not ok:
        w, h, _ = min(assignments, key=scale).bucket
        raise Drop(f'too small: {info.width}x{info.height}, bucket needs {w}x{h} (more than {MAX_UPSCALE:g}x enlargement)')
    for a in assignments:
        if a not in ok:
            entry['notes'].append(f'not in bucket {a.bucket[0]}x{a.bucket[1]}: {info.width}x{info.height} '
                                  f'would need {scale(a):.1f}x enlargement')
    return ok


def _media_summary(info: MediaInfo, fps):
    return {'width': info.width, 'height': info.height, 'frames': info.frames, 'fps': info.fps,
            'duration': info.duration, 'vfr': info.vfr, 'mode': info.mode,
            'frames_at_model_fps': frames_at_fps(info, fps)}


HELDOUT = 'heldout'                # the eval dataset eval_split makes


def heldout_files(names, share, seed):
    """The file names eval_split takes out of training: round(share * files) of them, at least one (when there
    are two or more files; never all), ranked by a hash of the seed and the name: the same choice every run,
    and a file keeps its side when others are added or removed (unless the count changes at the boundary)."""
    names = sorted(set(names))
    if not share or len(names) < 2:
        return set()
    k = min(len(names) - 1, max(1, int(math.floor(share * len(names) + 0.5))))
    ranked = sorted(names, key=lambda n: hashlib.sha256(f'{seed}|eval_split|{n}'.encode('utf-8')).hexdigest())
    return set(ranked[:k])


def heldout_config(dataset_cfg):
    """The eval dataset eval_split makes of a dataset config: the same config, building only the held-out files."""
    return {**dataset_cfg, 'eval_split_side': HELDOUT}


def _apply_eval_split(report, items, share, seed, side):
    """Keep the items of one side of the split (side 'train' or HELDOUT); the report notes the other side's files."""
    used = [f for f in report['files'] if f['status'] == 'used']
    held = heldout_files([f'{f["directory"]}/{f["name"]}' for f in used], share, seed)
    out_paths = set()
    for f in used:
        if (f'{f["directory"]}/{f["name"]}' in held) != (side == HELDOUT):
            f['status'], f['reason'] = 'split_off', ('held out for evaluation (eval_split)' if side != HELDOUT
                                                     else 'a training file, not held out (eval_split)')
            out_paths.add(f['path'])
            f['item_ids'] = []
    report['eval_split'] = {'share': share, 'side': side, 'heldout_files': len(held)}
    return [it for it in items if it.path not in out_paths]


def build_dataset(dataset_cfg, spec: MediaSpec, video_clip_mode='single_beginning', seed=0, probe_workers=None,
                  probe_cache=True) -> Dataset:
    """Items and report for a validated dataset config (utils.config.load_dataset_config). With eval_split the
    held-out files are left out (their report entries say so), or, for heldout_config(cfg), only they are kept."""
    report = {'version': REPORT_VERSION, 'spec': {'framerate': spec.framerate, 'size_multiple': spec.size_multiple,
                                                  'needs_video': getattr(spec, 'needs_video', False)},
              'video_clip_mode': video_clip_mode, 'seed': seed, 'subsample_ratio': dataset_cfg.get('subsample_ratio'),
              'directories': [], 'files': [], 'problems': []}
    listings = [(i, d, *_list_directory(i, d, report)) for i, d in enumerate(dataset_cfg['directory'])]
    probes = {}
    for i, d, folder, media, sources, masks in listings:
        cache_file = folder / 'cache' / 'probe.json' if probe_cache and media else None
        probes.update(probe_many(media + list((masks or {}).values()), probe_workers, cache_file))
    items = []
    for i, d, folder, media, sources, masks in listings:
        plan = BucketPlan(d, spec.size_multiple, spec.framerate)
        dir_items = []
        for path in media:
            entry = _file_entry(i, folder, path, 'used')
            report['files'].append(entry)
            if path in sources.listed:
                entry['notes'].append(f'listed in {sources.listed[path]}')
            try:
                dir_items += _file_items(entry, d, i, folder, path, probes, sources, masks, plan, spec, video_clip_mode, seed)
            except Drop as e:
                entry['status'], entry['reason'], entry['buckets'] = 'dropped', str(e), []
        _caption_dropout(dir_items, d['caption_dropout'], seed, i, report)
        items += dir_items
        report['directories'].append({'index': i, 'path': str(folder), 'num_repeats': d['num_repeats'],
                                      'mask_path': d.get('mask_path'),
                                      'caption_sources': [label for label, _ in sources.tables] if sources else []})
    if dataset_cfg.get('eval_split'):
        items = _apply_eval_split(report, items, dataset_cfg['eval_split'], seed,
                                  dataset_cfg.get('eval_split_side', 'train'))
    _summarize(report, items)
    return Dataset(items, report, spec)


def _file_items(entry, d, i, folder, path, probes, sources, masks, plan, spec, clip_mode, seed):
    info = probes[path]
    if isinstance(info, MediaError):
        raise Drop(f'unreadable: {info.reason}')
    entry['media'] = _media_summary(info, spec.framerate)
    entry['kind'] = info.kind
    entry['notes'] += info.notes
    if info.kind == 'image' and getattr(spec, 'needs_video', False):
        raise Drop('image: this model trains on video clips only (image-to-video)')
    captions = _captions_for(entry, d, sources, path, seed)
    n_frames = frames_at_fps(info, spec.framerate)
    assignments = _fitting(entry, info, plan.assign(info.width, info.height, info.kind, n_frames))
    mask = _mask_for(entry, masks, info, probes, d.get('default_mask_file'))
    out = []
    for a in assignments:
        starts = clip_starts(n_frames, a.bucket[2], clip_mode) if info.kind == 'video' else [0]
        entry['buckets'].append({'bucket': list(a.bucket), 'resolution': a.resolution, 'clip_starts': starts,
                                 'scale': round(upscale(info, a.bucket), 3)})
        for start in starts:
            iid = item_id(i, folder, entry['name'], a.bucket, start, a.resolution)
            out.append(DatasetItem(iid, str(path), captions, a.bucket, start, mask, d['num_repeats'], i, info.kind,
                                   spec.framerate, a.resolution))
            entry['item_ids'].append(iid)
    return out


def _caption_dropout(items, fraction, seed, directory, report):
    """Replace the captions of round(fraction * files) files of a directory by the empty caption.
    Which files is a pure function of the seed and the file names."""
    paths = sorted({it.path for it in items})
    k = int(math.floor(fraction * len(paths) + 0.5))
    if not k:
        return
    ranked = sorted(paths, key=lambda p: hashlib.sha256(f'{seed}|caption_dropout|{directory}|{p}'.encode()).hexdigest())
    chosen = set(ranked[:k])
    for it in items:
        if it.path in chosen:
            it.captions = ['']
    for entry in report['files']:
        if entry['path'] in chosen and entry['directory'] == directory:
            entry['notes'].append('caption replaced by the empty caption (caption_dropout)')


def _summarize(report, items):
    """Per-bucket counts and totals, recomputed from the items."""
    per_bucket = defaultdict(lambda: {'items': 0, 'items_per_epoch': 0, 'files': set()})
    for it in items:
        b = per_bucket[tuple(it.bucket)]
        b['items'] += 1
        b['items_per_epoch'] += it.repeats
        b['files'].add(it.path)
    report['buckets'] = [{'bucket': list(k), 'label': bucket_label(k), 'items': v['items'],
                          'items_per_epoch': v['items_per_epoch'], 'files': len(v['files'])}
                         for k, v in sorted(per_bucket.items())]
    files = report['files']
    report['totals'] = {
        'files': sum(1 for f in files if f['status'] != 'ignored'),
        'used': sum(1 for f in files if f['status'] == 'used'),
        'dropped': sum(1 for f in files if f['status'] == 'dropped'),
        'ignored': sum(1 for f in files if f['status'] == 'ignored'),
        'split_off': sum(1 for f in files if f['status'] == 'split_off'),
        'items': len(items),
        'items_per_epoch': sum(it.repeats for it in items),
        'caption_dropout_files': len({it.path for it in items if it.captions == ['']}),
    }


def bucket_label(bucket):
    return f'{bucket[0]}x{bucket[1]}x{bucket[2]}'


# --------------------------------------------------------------------------------------------
# Batching
# --------------------------------------------------------------------------------------------

def micro_batch_size_fn(micro_batch_size_per_gpu=1, image_micro_batch_size_per_gpu=None):
    """bucket -> micro-batch size. An int applies to every bucket; [[resolution, batch], ...] picks the
    entry whose side length is nearest to sqrt(w*h) of the bucket (the first on ties), as diffusion-pipe
    does. Images (frames = 1) use image_micro_batch_size_per_gpu (either form) when set."""
    def fn(bucket):
        w, h, frames = bucket
        size = image_micro_batch_size_per_gpu if frames == 1 and image_micro_batch_size_per_gpu else micro_batch_size_per_gpu
        if isinstance(size, int):
            return size
        side = math.sqrt(w * h)
        return min(size, key=lambda pair: abs(pair[0] - side))[1]
    return fn


def subsampled(n_steps, ratio):
    """Global batches an epoch keeps under the dataset's subsample_ratio (diffusion-pipe: int(n * ratio))."""
    return int(n_steps * ratio) if ratio else n_steps


def steps_per_epoch(report, micro_batch_size=1, image_micro_batch_size=None, dp_world=1, grad_accum=1):
    """Global steps per epoch from a report's bucket counts (works on a report read back from JSON).
    A global step takes dp_world * grad_accum * micro_batch items of one bucket; a bucket's remainder
    is dropped each epoch (which items varies with the shuffle)."""
    fn = micro_batch_size_fn(micro_batch_size, image_micro_batch_size)
    rows, steps, dropped = [], 0, 0
    for b in report['buckets']:
        mb = fn(tuple(b['bucket']))
        g = mb * dp_world * grad_accum
        n = b['items_per_epoch'] // g
        rows.append({'bucket': b['bucket'], 'label': b['label'], 'items_per_epoch': b['items_per_epoch'],
                     'micro_batch': mb, 'global_batch': g, 'steps': n, 'dropped': b['items_per_epoch'] - n * g})
        steps += n
        dropped += b['items_per_epoch'] - n * g
    ratio = report.get('subsample_ratio')
    return {'steps': subsampled(steps, ratio), 'subsample_ratio': ratio, 'dropped_per_epoch': dropped, 'micro_batch_size_per_gpu': micro_batch_size,
            'image_micro_batch_size_per_gpu': image_micro_batch_size, 'dp_world': dp_world,
            'grad_accum': grad_accum, 'buckets': rows}


@dataclass
class GlobalBatch:
    """One optimizer step's data: ids[dp_rank][accum_step] is a micro-batch of item ids, all one bucket.
    captions has the same shape and says which caption variant each item uses this time."""
    index: int
    bucket: tuple
    ids: list
    captions: list

    def __getitem__(self, rank):
        return self.ids[rank]

    def __len__(self):
        return len(self.ids)

    def for_rank(self, rank):
        """[[(item id, caption index), ...] per micro-batch] for one data-parallel rank."""
        return [list(zip(ids, caps)) for ids, caps in zip(self.ids[rank], self.captions[rank])]


def _rng(*parts):
    return random.Random(hashlib.sha256('|'.join(map(str, parts)).encode()).hexdigest())


def epoch_batches(dataset, micro_batch_size_fn, dp_world, grad_accum, seed, epoch):
    """Every global batch of an epoch, in order. A pure function of (items, seed, epoch): every rank
    computes the same list, and a resume at (epoch, batch index) continues exactly."""
    items = dataset.items if isinstance(dataset, Dataset) else dataset
    by_bucket = defaultdict(list)
    for it in items:
        by_bucket[tuple(it.bucket)].extend([it] * it.repeats)
    chunks = {}
    for bucket in sorted(by_bucket):
        pool = sorted(by_bucket[bucket], key=lambda it: it.id)
        _rng(seed, epoch, 'bucket', bucket).shuffle(pool)
        mb = micro_batch_size_fn(bucket)
        g = mb * dp_world * grad_accum
        chunks[bucket] = (mb, [pool[k:k + g] for k in range(0, len(pool) - g + 1, g)])
    order = [b for b in sorted(chunks) for _ in chunks[b][1]]
    _rng(seed, epoch, 'interleave').shuffle(order)
    cap_rng = _rng(seed, epoch, 'captions')
    taken = defaultdict(int)
    out = []
    for index, bucket in enumerate(order):
        mb, batches = chunks[bucket]
        chunk = batches[taken[bucket]]
        taken[bucket] += 1
        ids = [[[it.id for it in chunk[(s * dp_world + r) * mb:(s * dp_world + r + 1) * mb]] for s in range(grad_accum)]
               for r in range(dp_world)]
        caps = [[[cap_rng.randrange(len(it.captions)) for it in chunk[(s * dp_world + r) * mb:(s * dp_world + r + 1) * mb]]
                 for s in range(grad_accum)] for r in range(dp_world)]
        out.append(GlobalBatch(index, bucket, ids, caps))
    ratio = dataset.report.get('subsample_ratio') if isinstance(dataset, Dataset) else None
    return out[:subsampled(len(out), ratio)]


# --------------------------------------------------------------------------------------------
# The report as text
# --------------------------------------------------------------------------------------------

def format_report(report) -> str:
    t = report['totals']
    lines = [f"Dataset: {t['files']} files in {len(report['directories'])} folder(s): {t['used']} used, "
             f"{t['dropped']} dropped; {t['items']} items, {t['items_per_epoch']} per epoch with repeats"]
    if t['caption_dropout_files']:
        lines.append(f"  {t['caption_dropout_files']} file(s) train with the empty caption")
    if report.get('eval_split'):
        sp = report['eval_split']
        lines.append(f"  eval_split = {sp['share']:g}: {sp['heldout_files']} file(s) held out for evaluation "
                     f"({'this is that eval dataset' if sp['side'] == HELDOUT else 'not trained on'})")
    lines.append('Buckets (width x height x frames):')
    for b in report['buckets']:
        lines.append(f"  {b['label']:>16}  {b['items']:>5} items  {b['items_per_epoch']:>5} per epoch  {b['files']:>4} files")
    dropped = [f for f in report['files'] if f['status'] == 'dropped']
    if dropped:
        lines.append('Dropped:')
        lines += [f"  {f['path']}: {f['reason']}" for f in dropped]
    ignored = [f for f in report['files'] if f['status'] == 'ignored']
    if ignored:
        lines.append('Ignored:')
        lines += [f"  {f['path']}: {f['reason']}" for f in ignored]
    notes = [(f['path'], n) for f in report['files'] for n in f['notes'] if not n.startswith('listed in')]
    if notes:
        lines.append('Notes:')
        lines += [f'  {p}: {n}' for p, n in notes]
    if report['problems']:
        lines.append('Problems:')
        lines += [f'  {p}' for p in report['problems']]
    if 'batching' in report:
        bt = report['batching']
        lines.append(f"Steps per epoch: {bt['steps']} (data parallel {bt['dp_world']} x gradient accumulation "
                     f"{bt['grad_accum']}; {bt['dropped_per_epoch']} item(s) per epoch left over in partial batches)")
        if bt.get('subsample_ratio'):
            lines.append(f"  subsample_ratio = {bt['subsample_ratio']:g}: each epoch trains the first {bt['steps']} "
                         f"of its shuffled global batches")
        for r in bt['buckets']:
            lines.append(f"  {r['label']:>16}  micro-batch {r['micro_batch']}  global batch {r['global_batch']}  "
                         f"{r['steps']} steps  {r['dropped']} left over")
    return '\n'.join(lines)
