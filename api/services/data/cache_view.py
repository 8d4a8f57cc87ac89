"""What the latent cache holds: the clips a training run cached for a dataset (utils/cache.py's shards under
<dataset>/cache/<variant>/), and one decoded back to a video by a TAEHV, to check crops, frame counts and
buckets against what was meant.

TAEHV only, never the full VAE: the studio decodes in its own process, where a full Wan VAE would mean
gigabytes of weights and minutes per clip on a CPU; a TAEHV decodes a clip in seconds. Without a TAEHV of
the variant's latent channels under the model roots, decoding is refused with that reason.
"""

import hashlib
import os
from pathlib import Path

from models.wan.variants import VARIANTS

from ..errors import Invalid, NotFound

DECODED = '.studio/previews/cache-decoded'   # decoded clips by entry and TAEHV; a cache to backups, like previews
DECODED_KEEP = 64           # decoded clips kept per dataset and variant; the least recently asked for go first


def _store(folder, variant):
    if variant not in VARIANTS:
        raise NotFound(f'unknown model variant {variant!r}', field='variant')
    from utils.cache import Store
    return Store(Path(folder) / 'cache' / variant)


def cached_items(folder, variant):
    """[{item, source, key, frames, width, height}] of every latent entry cached for `variant`, by source."""
    from safetensors import safe_open
    store = _store(folder, variant)                     # an unknown variant: 404 naming it
    stride_t, stride_h, stride_w = VARIANTS[variant].vae_stride
    out = []
    for key, (shard, info) in store.scan().items():
        if info.get('kind') != 'latent' or 'latents' not in info.get('fields', ()):
            continue
        with safe_open(shard, framework='pt') as f:
            _, t, h, w = f.get_slice(f'{key}/latents').get_shape()
        out.append({'item': info.get('item'), 'source': info.get('source'), 'key': key,
                    'frames': (t - 1) * stride_t + 1, 'width': w * stride_w, 'height': h * stride_h})
    return sorted(out, key=lambda e: (str(e['source']), str(e['item'])))


def decode_item(folder, variant, item_id, taehv, fps, max_side=None, gate=None):
    """Path of an H.264 MP4 of the cached latents of `item_id` decoded by the TAEHV entry `taehv` (catalog),
    at the bucket's size (max_side: shrunk to at most that many pixels on a side) and frame count. The decode
    runs through `gate` (the studio's MediaGate: a few at once, else 503) and keeps the newest DECODED_KEEP
    files of the variant."""
    store = _store(folder, variant)
    found = [(k, s) for k, (s, info) in store.scan().items() if info.get('kind') == 'latent' and info.get('item') == item_id]
    if not found:
        raise NotFound(f'item {item_id} has no cached latents for {variant} (train on the dataset to build its cache)',
                       field='item')
    key, shard = found[-1]
    if taehv is None:
        raise Invalid(f'no TAEHV for {variant}\'s {VARIANTS[variant].z_dim}-channel latents under the model roots '
                      '(put taew2_1.pth / taew2_2.pth there)', field='taehv')
    if taehv['latent_channels'] != VARIANTS[variant].z_dim:
        raise Invalid(f'{taehv["name"]} decodes {taehv["latent_channels"]}-channel latents; {variant} caches '
                      f'{VARIANTS[variant].z_dim}-channel ones', field='taehv')
    tag = hashlib.sha256(f'{key}|{taehv["path"]}|{max_side}'.encode()).hexdigest()[:24]
    out = Path(folder) / DECODED / variant / f'{tag}.mp4'
    try:
        os.utime(out)                           # decoded before; recently used now, so pruned last
        return out
    except FileNotFoundError:
        pass
    except OSError:                             # a read-only data root: serve it as it is
        if out.is_file():
            return out
    if gate is None:
        return _decode(shard, key, taehv, fps, max_side, out)
    return gate.run(f'decoding cached item {item_id}', _decode, shard, key, taehv, fps, max_side, out)


def _decode(shard, key, taehv, fps, max_side, out):
    if out.is_file():                           # another request decoded it while this one waited
        return out
    import torch
    from safetensors import safe_open

    from models.taehv.model import load_taehv
    from models.taehv.preview import LivePreview
    from utils.media import write_video
    with safe_open(shard, framework='pt') as f:
        latents = f.get_tensor(f'{key}/latents').float()
    with torch.inference_mode():
        frames = LivePreview(load_taehv(taehv['path'])).frames(latents, max_side)
    write_video(out, frames, fps)               # temporary name, then renamed: never half a file
    prune(out.parent, DECODED_KEEP)
    return out


def prune(folder, keep):
    """Remove all but the `keep` most recently used MP4s of `folder`."""
    found = []
    for path in Path(folder).glob('*.mp4'):
        try:
            found.append((path.stat().st_mtime, path))
        except FileNotFoundError:
            pass
    for _, path in sorted(found, reverse=True)[keep:]:
        path.unlink(missing_ok=True)
