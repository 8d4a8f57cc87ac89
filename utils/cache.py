"""The latent / text-embedding cache: encode every clip and caption once, read them back by memory map.

    cache = Cache(dataset, variant='wan2.1-t2v-1.3b', vae_id=..., text_encoder_id=...)
    result = cache.build(dataset.items, encode_media, encode_text, batch_size=1, rank=r, world_size=n,
                         barrier=dist.barrier, progress=on_progress)
    dataset.drop(result.failed, result.gone)        # files that broke or vanished after the report was built
    reader = cache.reader(dataset.items)
    reader.get(item_id, caption_index)              # {'latents': ..., <text fields>..., 'mask'?: [h', w']}

Layout: `<directory path>/cache/<variant>/` per [[directory]] (as diffusion-pipe), or
`<cache_root>/<variant>/` for all of them:
    shards/<time>-r<rank>-<pid>-<n>.safetensors   tensors named '<entry key>/<field>'; the header's
                                                   metadata lists the entries the shard holds
    index.json                                     summary of the shards (rebuilt from headers if stale)
    items.json                                     item id -> entry keys, for trust = True
Keys: a latent entry's key hashes the source file (path, size, mtime_ns), bucket, clip start, the
mask file, the model variant, the VAE / image-encoder identities, the model frame rate and
PREPROCESS_VERSION; a text entry's key hashes the caption, the text-encoder identity and the variant.
An identity is what the model adapter says changes the encoding (Wan: the files, the dtype the encoders
compute in and whether the text encoder is stored in float8).
An entry whose inputs changed simply is not found, so stale data is never used.

Crash safety: a shard is written to a temporary name, fsynced and renamed; that rename is the commit
(the shard describes itself). Work is flushed every `flush_items` entries or `flush_seconds`, and on
an exception, so an interrupted build resumes after the last committed entry.
Several processes: rank r encodes the latents of items i with i % world_size == r, and every
world_size-th distinct caption, into its own shards; after barrier() every rank sees every entry.
Decoding runs `map_num_proc` threads ahead of the encoder (two batches).
Garbage: entries superseded by a newer copy, or not needed by a build for `gc_after_days`, are removed
by rank 0 at the start of a build (a shard that is mostly garbage is rewritten).
"""

import hashlib
import json
import os
import re
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file

from utils.fsutil import atomic_save, atomic_write_json
from utils.media import MediaError, file_signature, read_mask, read_media

PREPROCESS_VERSION = 1          # bump when decoding / resizing changes what a latent means
FORMAT = 'odeo-cache-1'
META_KEY = 'odeo_entries'
EMPTY_CAPTION = ''
TMP_MAX_AGE_S = 3600            # stray temporary files older than this are removed by garbage collection


class CacheError(RuntimeError):
    """The cache cannot be used at all (e.g. its folder is not writable); names the folder and a way out."""


@dataclass
class BuildResult:
    encoded_latents: int = 0     # by this rank in this call
    encoded_texts: int = 0
    reused: int = 0              # entries of this rank's share already in the cache
    failed: dict = field(default_factory=dict)   # item id -> reason, from every rank (after the barrier)
    gone: dict = field(default_factory=dict)     # path -> reason: cached by an earlier build, file now missing


def _hash(obj):
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(',', ':')).encode('utf-8')).hexdigest()[:32]


def _safe_name(s):
    return re.sub(r'[^A-Za-z0-9._-]+', '_', str(s)) or 'default'


# --------------------------------------------------------------------------------------------
# One cache folder
# --------------------------------------------------------------------------------------------

class Store:
    """A folder of self-describing safetensors shards plus index.json / items.json summaries."""

    def __init__(self, root):
        self.root = Path(root)
        self.shards = self.root / 'shards'
        self._counter = 0

    def scan(self):
        """{key: (shard path, entry info)} of every committed entry; the newest shard wins a duplicate."""
        index = self._read_json('index.json').get('shards', {})
        found = {}
        names = sorted(p.name for p in self.shards.glob('*.safetensors')) if self.shards.is_dir() else []
        for name in names:
            entries = index.get(name)
            if entries is None:
                entries = self.read_header(self.shards / name)
                if entries is None:
                    continue
            for key, info in entries.items():
                found[key] = (str(self.shards / name), info)
        return found

    @staticmethod
    def read_header(path):
        try:
            with safe_open(str(path), framework='pt') as f:
                meta = f.metadata() or {}
            return json.loads(meta[META_KEY]) if meta.get('format') == FORMAT else None
        except Exception:
            return None      # unreadable shard: its entries count as missing and get re-encoded

    def commit(self, entries, rank):
        """Write {key: (info, {field: tensor})} as one new shard; visible once this returns."""
        self._counter += 1
        name = f'{time.time_ns():020d}-r{rank}-{os.getpid()}-{self._counter}.safetensors'
        tensors, meta = {}, {}
        for key, (info, fields) in entries.items():
            nbytes = 0
            for fname, t in fields.items():
                t = t.detach().to('cpu').clone(memory_format=torch.contiguous_format)   # own storage, as safetensors needs
                tensors[f'{key}/{fname}'] = t
                nbytes += t.numel() * t.element_size()
            meta[key] = {**info, 'fields': sorted(fields), 'bytes': nbytes}
        self.shards.mkdir(parents=True, exist_ok=True)
        header = {'format': FORMAT, META_KEY: json.dumps(meta)}
        atomic_save(self.shards / name, lambda tmp: save_file(tensors, tmp, metadata=header))
        return name, meta

    def write_summaries(self, items=None):
        shards = {}
        for p in sorted(self.shards.glob('*.safetensors')) if self.shards.is_dir() else []:
            entries = self.read_header(p)
            if entries is not None:
                shards[p.name] = entries
        index = self._read_json('index.json')
        index.update({'format': FORMAT, 'shards': shards})
        atomic_write_json(self.root / 'index.json', index)
        if items is not None:
            atomic_write_json(self.root / 'items.json', items)

    def _read_json(self, name):
        try:
            return json.loads((self.root / name).read_text(encoding='utf-8'))
        except (OSError, ValueError):
            return {}

    def collect_garbage(self, needed, now, max_age_s):
        """Drop superseded entries and entries unused for max_age_s; remember when needed ones were used."""
        index = self._read_json('index.json')
        last_used = index.get('last_used', {})
        for key in needed:
            last_used[key] = now
        newest = {}
        headers = {}
        for p in sorted(self.shards.glob('*.safetensors')) if self.shards.is_dir() else []:
            headers[p] = self.read_header(p) or {}
            for key in headers[p]:
                newest[key] = p
        alive = set()
        for p, entries in headers.items():
            if not entries:                 # unreadable or empty shard: nothing in it can be used
                p.unlink(missing_ok=True)
                continue
            age_base = p.stat().st_mtime
            live = {k for k in entries if newest[k] == p and (k in needed or now - last_used.get(k, age_base) < max_age_s)}
            alive |= live
            total = sum(e['bytes'] for e in entries.values()) or 1
            dead = sum(e['bytes'] for k, e in entries.items() if k not in live)
            if not live:
                p.unlink(missing_ok=True)
            elif dead / total > 0.5:
                with safe_open(str(p), framework='pt') as f:
                    keep = {k: ({x: y for x, y in entries[k].items() if x not in ('fields', 'bytes')},
                                {fn: f.get_tensor(f'{k}/{fn}') for fn in entries[k]['fields']}) for k in live}
                self.commit(keep, rank=0)
                p.unlink(missing_ok=True)
        for tmp in self.shards.glob('.*.tmp') if self.shards.is_dir() else []:
            if now - tmp.stat().st_mtime > TMP_MAX_AGE_S:
                tmp.unlink(missing_ok=True)
        index['last_used'] = {k: t for k, t in last_used.items() if k in alive or k in needed}
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.root / 'index.json', index)
        return alive


# --------------------------------------------------------------------------------------------
# The cache of a dataset
# --------------------------------------------------------------------------------------------

class Cache:
    def __init__(self, dataset, variant, vae_id, text_encoder_id=None, image_encoder_id=None, cache_root=None,
                 regenerate=False, trust=False, flush_items=8, flush_seconds=30.0, gc_after_days=7.0):
        self.dataset = dataset
        self.variant = str(variant)
        self.identity = {'variant': self.variant, 'vae': str(vae_id), 'image_encoder': image_encoder_id and str(image_encoder_id),
                         'preprocess': PREPROCESS_VERSION}
        self.text_identity = {'variant': self.variant, 'text_encoder': str(text_encoder_id)}
        self.with_text = text_encoder_id is not None     # None: captions are encoded by the trainer each step
        self.cache_root = cache_root
        self.regenerate = regenerate
        self.trust = trust
        self.flush_items = flush_items
        self.flush_seconds = flush_seconds
        self.gc_after_s = gc_after_days * 86400

    @classmethod
    def from_identity(cls, dataset, identity, **kw):
        """From a model adapter's cache_identity() dict: 'variant', 'vae' and 'image_encoder' decide the
        latents; everything else ('text_encoder', 'text_len', ...) decides the text embeddings."""
        text = {k: v for k, v in identity.items() if k not in ('variant', 'vae', 'image_encoder')}
        return cls(dataset, identity['variant'], identity.get('vae'), json.dumps(text, sort_keys=True, default=str),
                   identity.get('image_encoder'), **kw)

    # ---- where things live ----------------------------------------------------------------

    def store_dir(self, directory_index):
        if self.cache_root is not None:
            return Path(self.cache_root) / _safe_name(self.variant)
        return Path(self.dataset.report['directories'][directory_index]['path']) / 'cache' / _safe_name(self.variant)

    def _stores(self, items):
        dirs = sorted({self.store_dir(it.directory) for it in items} or {self.store_dir(0)})
        return {d: Store(d) for d in dirs}

    # ---- keys -----------------------------------------------------------------------------

    def text_key(self, caption):
        return 't' + _hash({**self.text_identity, 'caption': caption})

    def latent_key(self, item):
        """Raises OSError when the source (or its mask) cannot be stat'ed."""
        size, mtime = file_signature(item.path)
        mask = list(file_signature(item.mask_path)) + [item.mask_path] if item.mask_path else None
        return 'l' + _hash({**self.identity, 'path': item.path, 'size': size, 'mtime_ns': mtime, 'bucket': list(item.bucket),
                            'clip_start': item.clip_start, 'fps': item.fps, 'kind': item.kind, 'mask': mask})

    def item_keys(self, items, stores):
        """{item id: {'latent': key, 'texts': [keys], 'mask': bool}} and {item id: reason} for items
        whose files are gone. With trust, keys saved by an earlier build are used without stat'ing."""
        saved = {}
        if self.trust and not self.regenerate:
            for store in stores.values():
                saved.update(store._read_json('items.json'))
        keys, missing = {}, {}
        for it in items:
            texts = [self.text_key(c) for c in it.captions] if self.with_text else []
            if it.id in saved:
                latent = saved[it.id]['latent']
            else:
                try:
                    latent = self.latent_key(it)
                except OSError:
                    missing[it.id] = 'file not found (deleted or moved after the dataset was built)'
                    continue
            keys[it.id] = {'latent': latent, 'texts': texts, 'mask': bool(it.mask_path)}
        return keys, missing

    # ---- building -------------------------------------------------------------------------

    def build(self, items, encode_media, encode_text, batch_size=1, rank=0, world_size=1, barrier=None,
              progress=None, map_num_proc=None) -> BuildResult:
        """Encode what is missing from this rank's share; afterwards every rank sees every entry.

        encode_media(pixels float [B, 3, F, H, W] in [-1, 1], masks float [B, H, W] or None)
            -> {'latents': [B, C, F', H', W'], ...any other field with leading B}
        encode_text(list of captions) -> [{field: tensor}, ...] one dict per caption
        progress(done, total): entries of this rank's share that are in the cache."""
        barrier = barrier or (lambda: None)
        items = list(items)
        if not items:                                   # nothing to do, but keep the ranks in step
            barrier()
            barrier()
            return BuildResult()
        stores = self._stores(items)
        for d in stores:
            _check_writable(d)
        keys, failed = self.item_keys(items, stores)
        empty = (self.text_key(EMPTY_CAPTION), min(stores))
        if rank == 0:
            self._prepare(stores, items, keys, empty)
        barrier()                                       # 1. rank 0 has collected garbage and saved the item list
        result = BuildResult(gone=self._gone(stores, items))
        have = {} if self.regenerate else {k: v for store in stores.values() for k, v in store.scan().items()}
        latent_jobs, text_jobs = self._shares(items, keys, empty, rank, world_size)
        todo_latents = [(k, it) for k, it in latent_jobs if k not in have]
        todo_texts = [(k, c, d) for k, c, d in text_jobs if k not in have]
        total = len(latent_jobs) + len(text_jobs)
        done = result.reused = total - len(todo_latents) - len(todo_texts)
        report = progress or (lambda d, t: None)
        report(done, total)
        writer = _Writer(stores, rank, self.flush_items, self.flush_seconds)
        try:                                            # 2. this rank's share, flushed as it goes
            for n, fails in self._encode_latents(todo_latents, encode_media, batch_size, map_num_proc, writer):
                result.encoded_latents += n
                failed.update(fails)
                done += n + len(fails)
                report(done, total)
            for n in self._encode_texts(todo_texts, encode_text, batch_size, writer):
                result.encoded_texts += n
                done += n
                report(done, total)
        finally:
            writer.flush()
        atomic_write_json(empty[1] / f'failed-r{rank}.json', failed)
        barrier()                                       # 3. every rank's entries and failures are on disk
        if rank == 0:
            for store in stores.values():
                store.write_summaries()
        for f in sorted(empty[1].glob('failed-r*.json')):
            result.failed.update(Store(empty[1])._read_json(f.name))
        return result

    def _prepare(self, stores, items, keys, empty):
        """Rank 0, alone: garbage collection, and the item list that trust = True reads."""
        needed = {d: set() for d in stores}
        for it in items:
            if it.id in keys:
                needed[self.store_dir(it.directory)].update([keys[it.id]['latent'], *keys[it.id]['texts']])
        needed[empty[1]].add(empty[0])
        for d, store in stores.items():
            alive = store.collect_garbage(needed[d], time.time(), self.gc_after_s)
            for old in store.root.glob('failed-r*.json'):
                old.unlink(missing_ok=True)
            manifest = {i: k for i, k in store._read_json('items.json').items() if k.get('latent') in alive}
            manifest.update({it.id: {**keys[it.id], 'path': it.path} for it in items
                             if it.id in keys and self.store_dir(it.directory) == d})
            atomic_write_json(store.root / 'items.json', manifest)

    def _gone(self, stores, items):
        """{path: reason} for files cached by an earlier build that no longer exist."""
        current = {it.path for it in items}
        folders = {Path(d['path']) for d in self.dataset.report['directories']}
        gone = {}
        for store in stores.values():
            for entry in store._read_json('items.json').values():
                path = entry.get('path')
                if path and path not in current and path not in gone and Path(path).parent in folders \
                        and not os.path.exists(path):
                    gone[path] = 'file not found: deleted or moved after it was cached'
        return gone

    def _shares(self, items, keys, empty, rank, world_size):
        """This rank's jobs: the latents of items i with i % world_size == rank (an entry shared by several
        items belongs to the first), and every world_size-th distinct caption in key order."""
        latents, seen = [], set()
        texts = {empty[0]: (EMPTY_CAPTION, empty[1])} if self.with_text else {}
        for i, it in enumerate(items):
            k = keys.get(it.id)
            if k is None:
                continue
            if k['latent'] not in seen:
                seen.add(k['latent'])
                if i % world_size == rank:
                    latents.append((k['latent'], it))
            for tk, caption in zip(k['texts'], it.captions):
                texts.setdefault(tk, (caption, self.store_dir(it.directory)))
        mine_t = [(k, *texts[k]) for n, k in enumerate(sorted(texts)) if n % world_size == rank]
        return latents, mine_t

    def _encode_latents(self, jobs, encode_media, batch_size, map_num_proc, writer):
        """Yields (encoded count, {item id: reason}) per batch; decoding runs ahead in a thread pool."""
        groups = {}
        for key, it in jobs:
            groups.setdefault((tuple(it.bucket), it.kind), []).append((key, it))
        batches = [g[i:i + batch_size] for g in groups.values() for i in range(0, len(g), batch_size)]
        workers = map_num_proc or min(8, os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            pending = deque()
            ahead = iter(batches)

            def submit():
                batch = next(ahead, None)
                if batch is not None:
                    pending.append((batch, [pool.submit(_decode, it) for _, it in batch]))

            for _ in range(2):
                submit()
            while pending:
                batch, futures = pending.popleft()
                submit()
                good, fails = [], {}
                for (key, it), fut in zip(batch, futures):
                    try:
                        good.append((key, it, *fut.result()))
                    except MediaError as e:
                        fails[it.id] = e.reason
                if good:
                    self._encode_batch(good, encode_media, writer)
                yield len(good), fails

    def _encode_batch(self, good, encode_media, writer):
        # uint8 [B, F, H, W, 3] -> float [B, 3, F, H, W] in [-1, 1]
        pixels = torch.stack([px for _, _, px, _ in good]).permute(0, 4, 1, 2, 3).contiguous().float().div_(127.5).sub_(1.0)
        has_mask = any(m is not None for *_, m in good)
        masks = None
        if has_mask:
            masks = torch.stack([m if m is not None else torch.ones(px.shape[1:3]) for _, _, px, m in good])
        with torch.no_grad():
            out = encode_media(pixels, masks)
        if 'latents' not in out:
            raise KeyError(f"encode_media must return a 'latents' tensor; it returned {sorted(out)}")
        for b, (key, it, _, mask) in enumerate(good):
            fields = {name: value[b] for name, value in out.items()}
            if mask is not None:
                h, w = out['latents'].shape[-2:]
                fields['mask'] = F.interpolate(mask[None, None], size=(h, w), mode='area')[0, 0]
            writer.add(self.store_dir(it.directory), key, {'kind': 'latent', 'item': it.id, 'source': it.path}, fields)

    def _encode_texts(self, jobs, encode_text, batch_size, writer):
        for i in range(0, len(jobs), batch_size):
            chunk = jobs[i:i + batch_size]
            with torch.no_grad():
                out = encode_text([caption for _, caption, _ in chunk])
            if len(out) != len(chunk):
                raise ValueError(f'encode_text returned {len(out)} results for {len(chunk)} captions')
            for (key, caption, store_dir), fields in zip(chunk, out):
                writer.add(store_dir, key, {'kind': 'text', 'caption': caption[:200]}, fields)
            yield len(chunk)

    # ---- reading --------------------------------------------------------------------------

    def reader(self, items=None):
        items = list(self.dataset.items if items is None else items)
        stores = self._stores(items)
        keys, _ = self.item_keys(items, stores)
        entries = {}
        for store in stores.values():
            entries.update(store.scan())
        return CacheReader(entries, keys, self.text_key(EMPTY_CAPTION))


def _check_writable(folder):
    try:
        (folder / 'shards').mkdir(parents=True, exist_ok=True)
        ok = os.access(folder / 'shards', os.W_OK)
        reason = 'no write permission'
    except OSError as e:
        ok, reason = False, e.strerror
    if not ok:
        raise CacheError(f'cannot write the cache folder {folder} ({reason}); pass cache_root to keep the cache elsewhere')


def _decode(item):
    """(uint8 pixels [F, H, W, 3], mask [H, W] or None) of an item, in a worker thread."""
    w, h, frames = item.bucket
    pixels = read_media(item.path, item.kind, item.fps, item.clip_start, frames, (w, h))
    mask = read_mask(item.mask_path, (w, h)) if item.mask_path else None
    return pixels, mask


class _Writer:
    """Buffers encoded entries per store and commits them as shards every few items / seconds."""

    def __init__(self, stores, rank, flush_items, flush_seconds):
        self.stores = stores
        self.rank = rank
        self.flush_items = flush_items
        self.flush_seconds = flush_seconds
        self.buffer = {}
        self.count = 0
        self.last = time.monotonic()

    def add(self, store_dir, key, info, fields):
        self.buffer.setdefault(store_dir, {})[key] = (info, fields)
        self.count += 1
        if self.count >= self.flush_items or time.monotonic() - self.last >= self.flush_seconds:
            self.flush()

    def flush(self):
        for store_dir, entries in self.buffer.items():
            if entries:
                self.stores[store_dir].commit(entries, self.rank)
        self.buffer, self.count, self.last = {}, 0, time.monotonic()


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------

class CacheReader:
    """Item dicts from memory-mapped shards: latent fields + text fields (+ 'mask' at latent size)."""

    def __init__(self, entries, item_keys, empty_text_key):
        self.entries = entries
        self.item_keys = item_keys
        self.empty_text_key = empty_text_key
        self._files = {}
        self._lock = threading.Lock()

    def __contains__(self, item_id):
        k = self.item_keys.get(item_id)
        return k is not None and k['latent'] in self.entries and all(t in self.entries for t in k['texts'])

    def missing(self, item_ids):
        return [i for i in item_ids if i not in self]

    def _entry(self, key, what):
        try:
            path, info = self.entries[key]
        except KeyError:
            raise KeyError(f'{what} is not in the cache (build the cache first)') from None
        with self._lock:
            f = self._files.get(path)
            if f is None:
                f = self._files[path] = safe_open(path, framework='pt')
        return {name: f.get_tensor(f'{key}/{name}') for name in info['fields']}

    def get(self, item_id, caption_index=0):
        k = self.item_keys.get(item_id)
        if k is None:
            raise KeyError(f'item {item_id} is not in this dataset or its file is gone')
        out = self._entry(k['latent'], f'latents of item {item_id}')
        if k['texts']:
            out.update(self._entry(k['texts'][caption_index], f'caption {caption_index} of item {item_id}'))
        return out

    def empty_text(self):
        """Text fields of the empty caption (for unconditional training)."""
        return self._entry(self.empty_text_key, 'the empty caption')

    def close(self):
        with self._lock:
            self._files.clear()
