"""The latent / text cache: read-back, crash resume, exact invalidation, several ranks, garbage.

The encoders are cheap deterministic stand-ins (average pooling to the latent shape, a caption-derived
embedding); the real VAE and text encoder are exercised by the trainer's tests."""

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tests.support.mediagen import caption, image, video
from utils.cache import Cache, CacheError, Store
from utils.config import validate_dataset
from utils.dataset import MediaSpec, build_dataset, epoch_batches, micro_batch_size_fn
from utils.media import read_media
from utils.train_data import Prefetcher, collate

ROOT = Path(__file__).resolve().parents[2]
SPEC = MediaSpec(framerate=16, size_multiple=16)
COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30), (30, 200, 200), (200, 30, 200)]


class FakeVAE:
    """Average-pools [B, 3, F, H, W] to [B, 3, 1 + (F - 1) // 4, H / 8, W / 8]; remembers what it saw."""

    def __init__(self, fail_at=None):
        self.calls = []
        self.fail_at = fail_at

    def __call__(self, pixels, masks):
        if self.fail_at is not None and len(self.calls) + 1 == self.fail_at:
            raise KeyboardInterrupt('interrupted')
        self.calls.append([colour_of(p) for p in pixels])
        return {'latents': F.avg_pool3d(pixels[:, :, ::4], (1, 8, 8)), 'first_frame': pixels[:, :, 0, ::8, ::8].clone()}

    def seen(self):
        return sorted(c for call in self.calls for c in call)


class FakeTextEncoder:
    def __init__(self):
        self.calls = []

    def __call__(self, captions):
        self.calls.append(list(captions))
        return [{'text': text_embedding(c)} for c in captions]

    def seen(self):
        return sorted(c for call in self.calls for c in call)


def text_embedding(caption):
    codes = torch.tensor([ord(ch) for ch in caption] + [0], dtype=torch.float32)
    return codes[:, None].repeat(1, 4)                   # [len + 1, 4]: variable length, as a real encoder's


def colour_of(pixels):
    """Mean RGB (0-255) of one sample's first frame: identifies the solid-colour test images."""
    return tuple(int(round(v)) for v in ((pixels[:, 0].mean(dim=(1, 2)) + 1) * 127.5).tolist())


def make_folder(d, n=4, with_video=False):
    d.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        caption(image(d / f'img{i}.png', 48, 32, color=COLOURS[i]), f'image number {i}')
    if with_video:
        caption(video(d / 'clip.mp4', 48, 32, fps=16, frames=20), 'a clip')
    return d


def dataset(d, **extra):
    cfg, issues = validate_dataset({'resolutions': [32], 'frame_buckets': [1, 17], 'enable_ar_bucket': True,
                                    'directory': [{'path': str(d), **extra}]}, str(d / 'dataset.toml'))
    assert not issues, issues
    return build_dataset(cfg, SPEC)


def cache_of(ds, **kw):
    return Cache(ds, 'wan-test', kw.pop('vae_id', 'vae-1'), kw.pop('text_encoder_id', 'umt5-1'), **kw)


def test_build_then_read_back(tmp_path):
    d = make_folder(tmp_path / 'data', with_video=True)
    masks = tmp_path / 'masks'
    masks.mkdir()
    m = torch.zeros(32, 48, dtype=torch.uint8)
    m[:, 24:] = 255
    from PIL import Image
    Image.fromarray(m.numpy()).convert('RGB').save(masks / 'img0.png')
    ds = dataset(d, mask_path=str(masks), cache_shuffle_num=2)
    vae, te = FakeVAE(), FakeTextEncoder()
    seen = []
    result = cache_of(ds).build(ds.items, vae, te, batch_size=2, progress=lambda done, total: seen.append((done, total)))
    assert result.encoded_latents == 5 and result.failed == {}
    total = 5 + len({c for it in ds.items for c in it.captions} | {''})   # latents + distinct captions
    assert seen[0] == (0, total) and seen[-1] == (total, total)
    reader = cache_of(ds).reader(ds.items)
    for it in ds.items:
        w, h, frames = it.bucket
        pixels = read_media(it.path, it.kind, it.fps, it.clip_start, frames, (w, h))
        expect = F.avg_pool3d(pixels.permute(3, 0, 1, 2)[None].float().div(127.5).sub(1)[:, :, ::4], (1, 8, 8))[0]
        got = reader.get(it.id, caption_index=1)
        assert torch.allclose(got['latents'], expect, atol=1e-6)
        assert torch.equal(got['text'], text_embedding(it.captions[1]))
        assert ('mask' in got) == it.path.endswith('img0.png')
    masked = next(it for it in ds.items if it.path.endswith('img0.png'))
    mask = reader.get(masked.id)['mask']
    assert mask.shape == (4, 6) and mask[:, :3].max() == 0 and mask[:, 3:].min() == 1     # at latent size
    assert torch.equal(reader.empty_text()['text'], text_embedding(''))
    # prefetching keeps the order of the trainer's micro-batches
    batches = epoch_batches(ds, micro_batch_size_fn(1, 2), 1, 1, seed=0, epoch=0)
    micro = [m for gb in batches for m in gb.for_rank(0)]
    loaded = list(Prefetcher(reader, micro, depth=2))
    assert len(loaded) == len(micro)
    for mb, got in zip(micro, loaded):
        assert [torch.equal(g['latents'], reader.get(i, c)['latents']) for g, (i, c) in zip(got, mb)] == [True] * len(mb)
    batch = collate(loaded[0])
    assert batch['latents'].shape[0] == len(micro[0])
    with pytest.raises(KeyError, match='not in this dataset'):
        list(Prefetcher(reader, [['no-such-item']]))


def test_interrupted_build_resumes_after_the_last_committed_item(tmp_path):
    d = make_folder(tmp_path / 'data', n=6)
    ds = dataset(d)
    vae = FakeVAE(fail_at=4)
    with pytest.raises(KeyboardInterrupt):
        cache_of(ds, flush_items=2).build(ds.items, vae, FakeTextEncoder())
    assert len(vae.seen()) == 3                                         # items 1-3 done, committed on the way out
    again = FakeVAE()
    cache_of(ds, flush_items=2).build(ds.items, again, FakeTextEncoder())
    assert again.seen() == sorted(set(COLOURS) - set(vae.seen()))        # only what was not committed


def test_a_killed_build_resumes_at_the_next_uncommitted_item(tmp_path):
    """A hard kill (no cleanup at all) after 5 encodes with a flush every 2: items 1-4 are on disk."""
    d = make_folder(tmp_path / 'data', n=6)
    script = textwrap.dedent(f'''
        import os, sys
        sys.path[:0] = [{str(ROOT)!r}]
        from tests.data.test_cache import FakeVAE, FakeTextEncoder, dataset, cache_of
        from pathlib import Path
        ds = dataset(Path({str(d)!r}))
        vae = FakeVAE()
        def encode(pixels, masks):
            if len(vae.calls) == 5:
                os._exit(9)
            return vae(pixels, masks)
        cache_of(ds, flush_items=2).build(ds.items, encode, FakeTextEncoder())
    ''')
    proc = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    ds = dataset(d)
    committed = [k for k, (_, info) in Store(d / 'cache' / 'wan-test').scan().items() if info['kind'] == 'latent']
    assert len(committed) == 4
    again = FakeVAE()
    cache_of(ds, flush_items=2).build(ds.items, again, FakeTextEncoder())
    assert len(again.seen()) == 2
    reader = cache_of(ds).reader(ds.items)
    assert all(it.id in reader for it in ds.items)


def test_editing_one_caption_re_encodes_exactly_that_text(tmp_path):
    d = make_folder(tmp_path / 'data')
    ds = dataset(d)
    cache_of(ds).build(ds.items, FakeVAE(), FakeTextEncoder())
    caption(d / 'img2.png', 'a new caption')
    ds = dataset(d)
    vae, te = FakeVAE(), FakeTextEncoder()
    cache_of(ds).build(ds.items, vae, te)
    assert te.calls == [['a new caption']] and vae.calls == []
    reader = cache_of(ds).reader(ds.items)
    edited = next(it for it in ds.items if it.path.endswith('img2.png'))
    assert torch.equal(reader.get(edited.id)['text'], text_embedding('a new caption'))


def test_a_new_vae_re_encodes_every_latent_and_no_text(tmp_path):
    d = make_folder(tmp_path / 'data')
    ds = dataset(d)
    cache_of(ds).build(ds.items, FakeVAE(), FakeTextEncoder())
    vae, te = FakeVAE(), FakeTextEncoder()
    result = cache_of(ds, vae_id='vae-2').build(ds.items, vae, te)
    assert vae.seen() == sorted(COLOURS[:4]) and te.calls == []
    assert result.encoded_latents == 4 and result.reused == 5


def test_changed_source_is_never_served_stale_unless_trusted(tmp_path):
    d = make_folder(tmp_path / 'data')
    ds = dataset(d)
    cache_of(ds).build(ds.items, FakeVAE(), FakeTextEncoder())
    image(d / 'img1.png', 48, 32, color=(9, 9, 9))
    os.utime(d / 'img1.png', ns=(time.time_ns(), time.time_ns() + 5_000_000_000))
    ds = dataset(d)
    trusted = FakeVAE()
    cache_of(ds, trust=True).build(ds.items, trusted, FakeTextEncoder())
    assert trusted.calls == []                                          # trust: the saved item list is used as is
    vae = FakeVAE()
    cache_of(ds).build(ds.items, vae, FakeTextEncoder())
    assert vae.seen() == [(9, 9, 9)]
    changed = next(it for it in ds.items if it.path.endswith('img1.png'))
    assert cache_of(ds).reader(ds.items).get(changed.id)['latents'].mean().item() == pytest.approx(9 / 127.5 - 1, abs=1e-3)


def test_two_ranks_each_encode_their_share_and_both_read_everything(tmp_path):
    d = make_folder(tmp_path / 'data', n=6)
    ds = dataset(d)
    barrier = threading.Barrier(2, timeout=60)
    vaes, results, readers, errors = [FakeVAE(), FakeVAE()], [None, None], [None, None], []

    def rank(r):
        try:
            cache = cache_of(ds)
            results[r] = cache.build(ds.items, vaes[r], FakeTextEncoder(), rank=r, world_size=2, barrier=barrier.wait)
            readers[r] = cache.reader(ds.items)
        except BaseException as e:        # surfaced below
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(vaes[0].seen()) == len(vaes[1].seen()) == 3
    assert sorted(vaes[0].seen() + vaes[1].seen()) == sorted(COLOURS)
    shards = sorted(p.name for p in (d / 'cache' / 'wan-test' / 'shards').iterdir())
    assert any('-r0-' in s for s in shards) and any('-r1-' in s for s in shards)
    for it in ds.items:
        assert torch.equal(readers[0].get(it.id)['latents'], readers[1].get(it.id)['latents'])


def test_files_deleted_before_or_after_caching(tmp_path):
    d = make_folder(tmp_path / 'data')
    ds = dataset(d)
    # deleted between building the dataset and caching: that item fails by name, the rest is cached
    os.unlink(d / 'img0.png')
    result = cache_of(ds).build(ds.items, FakeVAE(), FakeTextEncoder())
    failed = [ds.by_id[i].path for i in result.failed]
    assert failed == [str(d / 'img0.png')]
    ds.drop(result.failed, result.gone)
    entry = next(f for f in ds.report['files'] if f['name'] == 'img0.png')
    assert (entry['status'], entry['reason']) == ('dropped', 'unreadable: file not found (deleted or moved after the dataset was built)')
    assert ds.report['totals']['items'] == 3 and len(ds.items) == 3
    # deleted between caching and training: the report names it, nothing is re-encoded
    os.unlink(d / 'img1.png')
    ds = dataset(d)
    vae = FakeVAE()
    result = cache_of(ds).build(ds.items, vae, FakeTextEncoder())
    assert vae.calls == [] and result.gone == {str(d / 'img1.png'): 'file not found: deleted or moved after it was cached'}
    ds.drop(result.failed, result.gone)
    entry = next(f for f in ds.report['files'] if f['name'] == 'img1.png')
    assert (entry['status'], entry['reason']) == ('dropped', 'file not found: deleted or moved after it was cached')
    reader = cache_of(ds).reader(ds.items)
    assert all(it.id in reader for it in ds.items) and len(ds.items) == 2


def test_garbage_is_collected_and_crash_leftovers_are_ignored(tmp_path):
    d = make_folder(tmp_path / 'data')
    store = d / 'cache' / 'wan-test'
    ds = dataset(d)
    cache_of(ds).build(ds.items, FakeVAE(), FakeTextEncoder())
    # leftovers of a crash: a half-written temporary file and a damaged shard
    stray = store / 'shards' / '.x.safetensors.tmp'
    stray.write_bytes(b'partial')
    os.utime(stray, (time.time() - 7200, time.time() - 7200))
    (store / 'shards' / '00000000000000000001-r0-1-1.safetensors').write_bytes(b'\x00' * 64)
    # regenerate writes fresh copies of everything; the old copies become garbage
    vae = FakeVAE()
    cache_of(ds, regenerate=True).build(ds.items, vae, FakeTextEncoder())
    assert len(vae.calls) == 4
    # now only img0 is needed and unused entries expire at once: superseded shards are deleted, and the
    # shard holding img0 among 7 other entries (mostly garbage) is rewritten with just the live ones
    subset = [it for it in ds.items if it.path.endswith('img0.png')]
    vae = FakeVAE()
    cache_of(ds, gc_after_days=0).build(subset, vae, FakeTextEncoder())
    assert vae.calls == []
    entries = Store(store).scan()
    keys = {k for k, (_, info) in entries.items() if info['kind'] == 'latent'}
    cache = cache_of(ds)
    assert keys == {cache.latent_key(it) for it in subset}
    assert not stray.exists() and not (store / 'shards' / '00000000000000000001-r0-1-1.safetensors').exists()
    index = json.loads((store / 'index.json').read_text())
    assert sum(len(e) for e in index['shards'].values()) == len(entries)
    assert set(json.loads((store / 'items.json').read_text())) == {it.id for it in subset}


def test_latents_only_when_text_is_not_cached(tmp_path):
    d = make_folder(tmp_path / 'data', n=2)
    ds = dataset(d)
    cache = Cache(ds, 'wan-test', 'vae-1', text_encoder_id=None)
    result = cache.build(ds.items, FakeVAE(), None)
    assert result.encoded_latents == 2 and result.encoded_texts == 0
    got = cache.reader(ds.items).get(ds.items[0].id)
    assert sorted(got) == ['first_frame', 'latents']


def test_adapter_identity_splits_into_latent_and_text_parts(tmp_path):
    d = make_folder(tmp_path / 'data', n=2)
    ds = dataset(d)
    ident = {'variant': 'wan-test', 'vae': 'vae-1', 'image_encoder': None, 'text_encoder': 'umt5-1', 'text_len': 512}
    Cache.from_identity(ds, ident).build(ds.items, FakeVAE(), FakeTextEncoder())
    vae, te = FakeVAE(), FakeTextEncoder()
    Cache.from_identity(ds, {**ident, 'text_len': 256}).build(ds.items, vae, te)
    assert vae.calls == [] and te.seen() == ['', 'image number 0', 'image number 1']
    vae, te = FakeVAE(), FakeTextEncoder()
    Cache.from_identity(ds, {**ident, 'text_len': 256, 'image_encoder': 'clip-1'}).build(ds.items, vae, te)
    assert len(vae.seen()) == 2 and te.calls == []


def test_text_encoder_fp8_and_dtype_are_part_of_the_wan_cache_identity(tiny_models, tmp_path):
    """Toggling text_encoder_fp8 re-encodes exactly the captions; changing the compute dtype re-encodes both."""
    from models.wan.adapter import WanAdapter
    d = make_folder(tmp_path / 'data', n=2)
    ds = dataset(d)

    def identity(**model):
        ckpt = str(tiny_models / 'wan2.1-t2v-1.3b' / 'official')
        return WanAdapter({'model': {'type': 'wan', 'ckpt_path': ckpt, 'dtype': 'bfloat16', **model}}).cache_identity()

    Cache.from_identity(ds, identity()).build(ds.items, FakeVAE(), FakeTextEncoder())
    vae, te = FakeVAE(), FakeTextEncoder()
    Cache.from_identity(ds, identity(text_encoder_fp8=True)).build(ds.items, vae, te)
    assert vae.calls == [] and te.seen() == ['', 'image number 0', 'image number 1']
    vae, te = FakeVAE(), FakeTextEncoder()
    Cache.from_identity(ds, identity(text_encoder_fp8=True, transformer_dtype='float8')).build(ds.items, vae, te)
    assert vae.calls == [] and te.calls == []                  # the trained network's storage is not the cache's
    vae, te = FakeVAE(), FakeTextEncoder()
    Cache.from_identity(ds, identity(text_encoder_fp8=True, dtype='float32')).build(ds.items, vae, te)
    assert len(vae.seen()) == 2 and te.seen() == ['', 'image number 0', 'image number 1']


def test_an_unwritable_cache_folder_is_a_clear_error(tmp_path):
    d = make_folder(tmp_path / 'data', n=1)
    ds = dataset(d)
    blocker = tmp_path / 'not-a-folder'
    blocker.write_text('a file where the cache folder should go')
    with pytest.raises(CacheError, match=r'cannot write the cache folder .*not-a-folder.*pass cache_root'):
        cache_of(ds, cache_root=blocker).build(ds.items, FakeVAE(), FakeTextEncoder())
    result = cache_of(ds, cache_root=tmp_path / 'elsewhere').build(ds.items, FakeVAE(), FakeTextEncoder())
    assert result.encoded_latents == 1 and (tmp_path / 'elsewhere' / 'wan-test' / 'shards').is_dir()
    assert not (d / 'cache' / 'wan-test').exists()
