"""The trainer's view of a dataset: items and their report, the latent / text cache filled through
the model adapter's encoders, and, per epoch, the global batches each rank trains on.

    data = TrainData.build(ctx, config, adapter, dataset_config, 'train')   # ctx: utils.run_context.RunContext
    for gb in data.global_batches(epoch): ...            # utils.dataset.GlobalBatch
    items = data.load(gb.for_rank(dp_rank)[micro])       # item dicts from the memory-mapped cache
"""

import sys
import threading
import time
from queue import Full, Queue

import torch

from utils.cache import Cache
from utils.dataset import build_dataset, epoch_batches, format_report, micro_batch_size_fn
from utils.fsutil import atomic_write_json, atomic_write_text

EXPERT_SHARE_WARNING = 0.10     # an expert expected to get less of the samples than this is warned about


class TrainData:
    def __init__(self, dataset, reader, batch_size_fn, dp_world, grad_accum, seed, text_encoder=None):
        self.dataset = dataset
        self.reader = reader
        self.batch_size_fn = batch_size_fn
        self.dp_world = dp_world
        self.grad_accum = grad_accum
        self.seed = seed
        self.text_encoder = text_encoder        # adapter.encode_text when text embeddings are not cached
        self._batches = {}
        self.steps_per_epoch = len(self.global_batches(1))

    @classmethod
    def build(cls, ctx, cfg, adapter, dataset_config, name, regenerate=False, trust=False):
        """Build the dataset, report it, and make sure every item is in the cache (each rank encodes its share).

        regenerate / trust: --regenerate_cache / --trust_cache."""
        is_train = name == 'train'
        dataset = build_dataset(dataset_config, adapter.media_spec, cfg['video_clip_mode'], seed=cfg['seed'])
        mbs = cfg['micro_batch_size_per_gpu'] if is_train else cfg['eval_micro_batch_size_per_gpu']
        image_mbs = cfg['image_micro_batch_size_per_gpu'] if is_train else cfg['eval_image_micro_batch_size_per_gpu']
        ga = cfg['gradient_accumulation_steps'] if is_train else cfg['eval_gradient_accumulation_steps']

        cache_text = adapter.model_config.get('cache_text_embeddings', True)
        identity = adapter.cache_identity()
        if cache_text:
            cache = Cache.from_identity(dataset, identity, regenerate=regenerate, trust=trust)
        else:
            cache = Cache(dataset, identity['variant'], identity.get('vae'), None, identity.get('image_encoder'),
                          regenerate=regenerate, trust=trust)
        encoders = _LazyEncoders(adapter, ctx.device)
        progress = _CacheProgress(ctx.events, name, ctx.world)
        result = cache.build(dataset.items, encoders.encode_media, encoders.encode_text,
                             batch_size=cfg['caching_batch_size'], rank=ctx.rank, world_size=ctx.world,
                             barrier=ctx.barrier, progress=progress, map_num_proc=cfg['map_num_proc'])
        if cache_text:
            encoders.unload()
        dataset.drop(result.failed, result.gone)
        dataset.steps_per_epoch(mbs, image_mbs, ctx.dp_world, ga)
        experts = expert_report(adapter, dataset.report) if is_train else ''
        if ctx.rank == 0:
            file = 'dataset_report.json' if is_train else f'dataset_report_{name.split("/", 1)[-1]}.json'
            atomic_write_json(ctx.run_dir / file, dataset.report)
            ctx.events.artifact('report', file, dataset=name)
            print(f'--- {name} ---\n{format_report(dataset.report)}{experts}', flush=True)
            print(f'cache: {result.reused} entries reused, {result.encoded_latents} latents and '
                  f'{result.encoded_texts} captions encoded', flush=True)
        if not dataset.items:
            raise ValueError(f'{name} dataset has no usable items (see dataset_report.json for why each file was dropped)')
        # Uncached captions are encoded as batches load: through the lazy encoders, which load on first use
        # when the cache was already complete.
        data = cls(dataset, cache.reader(dataset.items), micro_batch_size_fn(mbs, image_mbs), ctx.dp_world, ga,
                   cfg['seed'], None if cache_text else encoders.encode_text)
        if data.steps_per_epoch == 0:
            raise ValueError(f'{name} dataset has {len(dataset.items)} items but none of its buckets fills one global '
                             f'batch ({ctx.dp_world} data-parallel ranks x {ga} accumulation steps x micro-batch)')
        return data

    def global_batches(self, epoch):
        if epoch not in self._batches:
            self._batches = {epoch: epoch_batches(self.dataset, self.batch_size_fn, self.dp_world, self.grad_accum,
                                                  self.seed, epoch)}
        return self._batches[epoch]

    @staticmethod
    def examples_in(global_batch):
        return sum(len(micro) for rank in global_batch.ids for micro in rank)

    def load(self, micro_batch):
        """[(item id, caption index), ...] -> item dicts ready for adapter.collate()."""
        items = [self.reader.get(item_id, caption) for item_id, caption in micro_batch]
        if self.text_encoder is not None:
            captions = [self.dataset.by_id[i].captions[c] for i, c in micro_batch]
            for item, text in zip(items, self.text_encoder(captions)):
                item.update(text)
        return self._with_empty(items)

    def stream(self, micro_batches, depth=4):
        """Loaded micro-batches in order; a background thread reads ahead from the cache."""
        if self.text_encoder is not None:        # captions are encoded as they come: no thread
            return (self.load(m) for m in micro_batches)
        return (self._with_empty(items) for items in Prefetcher(self.reader, micro_batches, depth=depth))

    def _with_empty(self, items):
        """Attach the empty caption's embedding, which uncond_fraction swaps in."""
        empty = self.empty_text()
        if empty is not None:
            for item in items:
                item['uncond_text'] = empty
        return items

    def empty_text(self):
        if not hasattr(self, '_empty'):
            try:
                self._empty = self.reader.empty_text().get('text_embeddings') if self.text_encoder is None else \
                    self.text_encoder([''])[0]['text_embeddings']
            except KeyError:
                self._empty = None
        return self._empty


def collate(examples):
    """Stack a micro-batch of item dicts: same-shape tensors -> one tensor; differing shapes (text of
    different lengths) -> a list. 'mask' is filled with ones for items that have none."""
    if any('mask' in e for e in examples):
        shape = next(e['mask'].shape for e in examples if 'mask' in e)
        examples = [e if 'mask' in e else {**e, 'mask': torch.ones(shape)} for e in examples]
    out = {}
    for name in examples[0]:
        values = [e[name] for e in examples]
        same = all(v.shape == values[0].shape for v in values)
        out[name] = torch.stack(values) if same else values
    return out


class Prefetcher:
    """Loads micro-batches in a background thread, `depth` ahead, in order.

    micro_batches: iterable of lists of item ids or of (item id, caption index) pairs (see
    GlobalBatch.for_rank). Iterating yields a list of item dicts per micro-batch."""

    _END = object()

    def __init__(self, reader, micro_batches, depth=4):
        self.reader = reader
        self.queue = Queue(maxsize=depth)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(iter(micro_batches),), daemon=True)
        self.thread.start()

    def _run(self, batches):
        try:
            for batch in batches:
                if self.stop.is_set():
                    return
                loaded = [self.reader.get(*e) if isinstance(e, (tuple, list)) else self.reader.get(e) for e in batch]
                self._put(loaded)
            self._put(self._END)
        except BaseException as e:  # handed to the consumer, raised there
            self._put(e)

    def _put(self, obj):
        while not self.stop.is_set():
            try:
                self.queue.put(obj, timeout=0.1)
                return
            except Full:
                continue

    def __iter__(self):
        while True:
            obj = self.queue.get()
            if obj is self._END:
                return
            if isinstance(obj, BaseException):
                raise obj
            yield obj

    def close(self):
        self.stop.set()
        self.thread.join(timeout=5)

class _LazyEncoders:
    """Encoders load on first use, so a run whose cache is complete never loads the VAE or UMT5."""

    def __init__(self, adapter, device):
        self.adapter = adapter
        self.device = device
        self.loaded = False

    def _ensure(self):
        if not self.loaded:
            self.adapter.load_encoders(self.device)
            self.loaded = True

    def encode_media(self, pixels, masks=None):
        self._ensure()
        return self.adapter.encode_media(pixels, masks)

    def encode_text(self, captions):
        self._ensure()
        return self.adapter.encode_text(captions)

    def unload(self):
        if self.loaded:
            self.adapter.unload_encoders()
            self.loaded = False


class _CacheProgress:
    """progress(done, total) of rank 0's share -> `progress` events (phase cache), scaled to the whole set."""

    def __init__(self, events, name, world):
        self.events = events
        self.name = name
        self.world = world
        self.start = time.time()
        self.last = 0.0
        self.first_done = None

    def __call__(self, done, total):
        now = time.time()
        if self.first_done is None:
            self.first_done = done
        if done < total and now - self.last < 1.0:
            return
        self.last = now
        rate = (done - self.first_done) / max(1e-9, now - self.start)
        self.events.progress(phase='cache', dataset=self.name, done=done * self.world, total=total * self.world,
                             items_per_s=round(rate * self.world, 3))


def dump_dataset_report(config, adapter, dataset_config, run_dir=None, world_size=1, out_dir=None):
    """train.py --dump_dataset [PATH]: the report, printed, and saved into run_dir and out_dir (PATH) if given,
    out_dir also as text; no weights load. (diffusion-pipe's --dump_dataset PATH decodes cached latents to
    images there, for Flux only by its own account; here PATH receives what trains, file by file.)"""
    dataset = build_dataset(dataset_config, adapter.media_spec, config['video_clip_mode'], seed=config['seed'])
    dp_world = max(1, world_size // config['pipeline_stages'])
    dataset.steps_per_epoch(config['micro_batch_size_per_gpu'], config['image_micro_batch_size_per_gpu'], dp_world,
                            config['gradient_accumulation_steps'])
    experts = expert_report(adapter, dataset.report)
    print(format_report(dataset.report) + experts)
    sys.stdout.flush()
    if run_dir is not None:
        atomic_write_json(run_dir / 'dataset_report.json', dataset.report)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out_dir / 'dataset_report.json', dataset.report)
        atomic_write_text(out_dir / 'dataset_report.txt', format_report(dataset.report) + '\n')
    return dataset.report


def expert_report(adapter, report):
    """Models with several experts: report['experts'] = each expert's expected share of the training
    samples (from the timestep distribution and the boundary), with a warning for a share under
    EXPERT_SHARE_WARNING -> those lines as text ('' with one network)."""
    buckets = [(tuple(b['bucket']), b['items_per_epoch']) for b in report.get('buckets', [])]
    shares = adapter.expert_shares(buckets)
    if shares is None:
        return ''
    sampling = adapter.model_config.get('expert_sampling', 'timestep')
    warnings = [f"the {name} expert is expected to get {share:.1%} of the samples (under {EXPERT_SHARE_WARNING:.0%}): "
                f"it trains on few steps; expert_sampling = 'balanced' gives each expert half"
                for name, share in shares.items() if share < EXPERT_SHARE_WARNING]
    report['experts'] = {'sampling': sampling, 'shares': shares, 'warnings': warnings}
    lines = [f'Experts (expert_sampling = {sampling!r}), expected share of the samples:']
    lines += [f'  {name:>16}  {share:6.1%}' for name, share in shares.items()]
    lines += [f'warning: {w}' for w in warnings]
    return '\n' + '\n'.join(lines)
