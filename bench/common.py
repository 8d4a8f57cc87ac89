"""What the training benchmarks share: a tiny model + demo dataset in a temp folder, and a textbook
training step (diffusers transformer forward, MSE, backward, clip, AdamW) to compare our machinery with."""

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault('HF_HUB_OFFLINE', '1')


def setup(model='wan2.1-t2v-1.3b', **config):
    """-> (work folder, config path) for the tiny model and the demo dataset."""
    from models.wan.tiny import write_tiny_model
    from tools.make_demo_dataset import make_demo_dataset
    from tests.support.trainer import config_text, write_config
    work = Path(tempfile.mkdtemp(prefix='odeo-bench-'))
    path = write_tiny_model(work / 'models', model, layouts=('official',))['official']
    dataset = make_demo_dataset(work / 'demo')
    return work, write_config(work, config_text(path, dataset, work / 'out', **config))


class PlainLoop:
    """The same math as a train.py step, written the plain way, on the dataset of a config."""

    def __init__(self, config_path):
        import torch

        from models.wan.adapter import WanAdapter
        from utils.config import load_dataset_config, load_main_config
        from utils.dataset import build_dataset, epoch_batches, micro_batch_size_fn
        torch.set_num_threads(1)
        self.cfg = load_main_config(config_path)
        self.adapter = WanAdapter(self.cfg)
        self.dataset = build_dataset(load_dataset_config(self.cfg['dataset']), self.adapter.media_spec,
                                     self.cfg['video_clip_mode'], seed=self.cfg['seed'])
        (self.transformer,) = self.adapter.build_diffusion_model(seed=self.cfg['seed'])
        self.params = [p for p in self.transformer.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=self.cfg['optimizer']['lr'], weight_decay=0.0)
        self.ga = self.cfg['gradient_accumulation_steps']
        fn = micro_batch_size_fn(self.cfg['micro_batch_size_per_gpu'])
        self.batches_for = lambda epoch: epoch_batches(self.dataset, fn, 1, self.ga, self.cfg['seed'], epoch)

    def batches(self, steps):
        out, epoch = [], 1
        while len(out) < steps:
            out += self.batches_for(epoch)
            epoch += 1
        return out[:steps]

    def reader(self):
        from utils.cache import Cache
        return Cache.from_identity(self.dataset, self.adapter.cache_identity()).reader(self.dataset.items)

    def step(self, step, micro_items):
        """One optimizer step over grad-accumulation micro-batches (lists of item dicts); returns seconds."""
        import torch
        t0 = time.perf_counter()
        for micro, items in enumerate(micro_items):
            batch = self.adapter.collate(items)
            (x_t, timestep, text, _expert), (target, _mask) = self.adapter.prepare_inputs(
                batch, torch.Generator().manual_seed(step * 1000 + micro))
            pred = self.transformer(x_t, timestep, text, return_dict=False)[0]
            (torch.nn.functional.mse_loss(pred.float(), target.float()) / self.ga).backward()
        torch.nn.utils.clip_grad_norm_(self.params, self.cfg['gradient_clipping'])
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return time.perf_counter() - t0
