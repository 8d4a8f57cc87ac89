"""Peak memory and time of loading a Wan transformer from official shards (not part of the test suite).

Writes a mid-size random transformer (default ~0.5 GB in float32, two shards) in the official layout,
then loads it in a fresh process with `load_transformer(..., torch.bfloat16)` and reports the peak
anonymous memory (file pages mapped from the checkpoint excluded: the kernel can drop them) against the
size of the loaded model. A loader that keeps a second copy of the weights peaks near file size + model
size; ours should stay near the model size.

    .venv/bin/python bench/bench_checkpoint_load.py [--dim 1024] [--layers 10] [--dtype bfloat16]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def write(folder: Path, dim: int, layers: int):
    import torch
    from diffusers import WanTransformer3DModel
    from models.wan.keymaps import official_state_dict
    from models.wan.tiny import _save_sharded, _write_json
    heads = dim // 128
    with torch.device('meta'):
        model = WanTransformer3DModel(num_attention_heads=heads, attention_head_dim=128, ffn_dim=dim * 4, num_layers=layers,
                                      text_dim=4096, in_channels=16, out_channels=16)
    state = {k: torch.randn(v.shape) * 0.02 for k, v in official_state_dict(model.state_dict()).items()}
    _save_sharded(folder, state, 2)
    _write_json(folder / 'config.json', {'_class_name': 'WanModel', 'dim': dim, 'eps': 1e-6, 'ffn_dim': dim * 4, 'freq_dim': 256,
                                         'in_dim': 16, 'model_type': 't2v', 'num_heads': heads, 'num_layers': layers,
                                         'out_dim': 16, 'text_len': 512})


def load(folder: Path, dtype: str):
    import torch
    from models.wan.checkpoints import Source, WanCheckpoint, _diffusers_transformer_config, _header_names
    from models.wan.variants import VARIANTS
    from models.wan.weights import load_transformer
    config = json.loads((folder / 'config.json').read_text())
    files = sorted(folder.glob('*.safetensors'))
    ckpt = WanCheckpoint(variant=VARIANTS['wan2.1-t2v-14b'], layout='official', root=folder,
                         transformers={'main': Source('official', files, config)},
                         transformer_config={'main': _diffusers_transformer_config(config, _header_names(files), folder)},
                         vae=None, text_encoder=None, tokenizer_dir=folder)
    from diffusers import WanTransformer3DModel  # noqa: F401  (imported before measuring)
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers  # noqa: F401
    base = anon_kb()
    peak = [base]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], anon_kb())
            time.sleep(0.002)
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    start = time.time()
    model = load_transformer(ckpt, 'main', getattr(torch, dtype))
    seconds = time.time() - start
    done.set()
    thread.join()
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    print(json.dumps({'files_mb': round(sum(f.stat().st_size for f in files) / 2**20), 'model_mb': round(size / 2**20),
                      'peak_anon_increase_mb': round((peak[0] - base) / 1024), 'seconds': round(seconds, 2)}))


def anon_kb():
    """Anonymous resident memory (excludes file pages a memory map brings in, which the kernel can drop)."""
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith('RssAnon:'):
            return int(line.split()[1])
    return 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--dim', type=int, default=1024)
    parser.add_argument('--layers', type=int, default=10)
    parser.add_argument('--dtype', default='bfloat16')
    parser.add_argument('--load', type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.load:
        return load(args.load, args.dtype)
    with tempfile.TemporaryDirectory() as d:
        write(Path(d), args.dim, args.layers)
        env = {**os.environ, 'HF_HUB_OFFLINE': '1'}
        subprocess.run([sys.executable, __file__, '--load', d, '--dtype', args.dtype], check=True, env=env)


if __name__ == '__main__':
    main()
