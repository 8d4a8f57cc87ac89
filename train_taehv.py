"""Train a TAEHV (tiny video autoencoder for Wan latents) from a published checkpoint, distilled against
the Wan VAE, data-parallel with DeepSpeed ZeRO-2.

    deepspeed --include=localhost:0,1 train_taehv.py --deepspeed --config my_taehv.toml
    deepspeed --num_gpus 2 train_taehv.py --deepspeed --config examples/taehv_demo.toml    # no GPU: CPU ranks

The data side is the LoRA trainer's: the dataset TOML, and the latent cache filled by the Wan VAE (the
encoder's targets); the clip pixels are the decoder's. The run directory is a LoRA run's (docs/taehv.md):
config.toml, dataset_report.json, events.jsonl, tensorboard/, epochN/taehv.pth (the published layout),
samples/ (original | reference VAE | TAEHV videos), checkpoints/ to resume from.
"""

import os
import signal
import sys
import time
from pathlib import Path

import torch

from train import local_device, parse_args, refuse, resume_and_run_dir, run_distributed
from utils.config import ConfigError, load_dataset_config
from utils.run_context import RunContext

CONTROL = ('stop', 'save_quit', 'checkpoint', 'save')
LOSSES = ('encoder', 'decoder', 'adversarial', 'discriminator')


class CacheView:
    """The Wan adapter as utils/train_data.py sees it for this trainer: latents only (no captions)."""

    def __init__(self, wan):
        self.wan = wan
        self.media_spec = wan.media_spec
        self.model_config = {'cache_text_embeddings': False}

    def cache_identity(self):
        return self.wan.cache_identity()

    def load_encoders(self, device):
        self.wan.load_encoders(device)

    def encode_media(self, pixels, masks=None):
        return self.wan.encode_media(pixels, masks)

    def encode_text(self, captions):
        raise RuntimeError('the TAEHV trainer reads no captions')

    def expert_shares(self, buckets=()):
        return None                         # one network trains here, whatever experts the Wan model has

    def unload_encoders(self):
        self.wan.unload_encoders()


class TAEHVTrainer:
    exit_code = 0                           # what run_distributed returns: this loop has no preemption exit

    def __init__(self, args, cfg, wan, dataset_config, eval_configs, run_dir, events, resume_from=None):
        import deepspeed.comm as dist
        self.dist = dist
        self.args, self.cfg, self.wan = args, cfg, wan
        self.dataset_config, self.eval_configs = dataset_config, eval_configs
        self.run_dir = Path(run_dir)
        self.events = events
        self.resume_from = resume_from
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.device = local_device()
        self.ctx = RunContext(rank=self.rank, world=self.world, dp_world=self.world, device=self.device,
                              barrier=dist.barrier, events=events, run_dir=self.run_dir)
        self.ga = cfg['gradient_accumulation_steps']
        self.step, self.epoch, self.batch_in_epoch, self.examples = 0, 1, 0, 0
        self.stop_requested = False
        self.last_checkpoint_time = time.time()
        self.saved_step = None        # the step of the last saved taehv.pth
        self.references = {}          # eval item id -> the reference VAE's reconstruction (computed once)
        self.tb = None

    # -- setup ----------------------------------------------------------------------------------
    def prepare_data(self):
        from utils.train_data import TrainData
        self.events.status('caching', 'building the dataset and the latent cache')
        view = CacheView(self.wan)
        flags = {'regenerate': self.args.regenerate_cache, 'trust': self.args.trust_cache}
        built = [TrainData.build(self.ctx, self.cfg, view, self.dataset_config, 'train', **flags)]
        built += [TrainData.build(self.ctx, self.cfg, view, c, f'eval/{n}', **flags) for n, c in self.eval_configs.items()]
        for data in built:
            data.text_encoder = None          # latents only: captions are never read
        view.unload_encoders()
        self.data, self.eval_data = built[0], dict(zip(self.eval_configs, built[1:]))
        self.dist.barrier()

    def build_engine(self):
        import deepspeed

        from models.taehv.train_parts import Distill, build_taehv
        from optimizers import build_optimizer
        from utils.checkpointing import Saver
        from utils.schedule import build_scheduler
        cfg, tcfg = self.cfg, self.cfg['taehv']
        torch.manual_seed(cfg['seed'])                  # a preset's random init (and the discriminator's): same on every rank
        self.module = Distill(build_taehv(tcfg), tcfg)
        optimizer = build_optimizer(cfg['optimizer'], self.module.parameters())
        per_epoch = self.data.steps_per_epoch
        self.total_steps = min(per_epoch * cfg['epochs'], cfg['max_steps'] or per_epoch * cfg['epochs'])
        scheduler = build_scheduler(optimizer, cfg['warmup_steps'], self.total_steps, cfg['lr_scheduler'])
        ds_config = {
            'train_micro_batch_size_per_gpu': cfg['micro_batch_size_per_gpu'],
            'gradient_accumulation_steps': self.ga,
            'gradient_clipping': cfg['gradient_clipping'],
            'zero_optimization': {'stage': 2},
            'zero_allow_untested_optimizer': True,
            'bf16': {'enabled': tcfg['dtype'] == 'bfloat16'},
            'steps_per_print': 10 ** 9,
            'wall_clock_breakdown': False,
        }
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=self.module, optimizer=optimizer, lr_scheduler=scheduler, config=ds_config)
        self.saver = Saver(self.ctx, None, None, self.engine, lora=False)
        n = sum(p.numel() for p in self.module.taehv.parameters())
        print(f'[rank {self.rank}] TAEHV {self.module.taehv.config}: {n:,} parameters', flush=True)

    # -- one step -------------------------------------------------------------------------------
    def load(self, micro_batch, data):
        """[(item id, caption index), ...] -> (pixels [B, 3, F, H, W], Wan latents [B, C, T, h, w]) on the device."""
        from models.taehv.train_parts import clip_pixels
        items = [data.dataset.by_id[i] for i, _ in micro_batch]
        pixels = torch.stack([clip_pixels(it) for it in items])
        latents = torch.stack([data.reader.get(i)['latents'] for i, _ in micro_batch])
        dtype = self.engine.module.taehv.encoder[0].weight.dtype
        return pixels.to(self.device, dtype), latents.to(self.device, dtype)

    def train_step(self, global_batch):
        from models.taehv.train_parts import adversarial_scale
        sums = dict.fromkeys(('loss', *LOSSES), 0.0)
        scale = adversarial_scale(self.step, self.cfg['taehv']['adversarial_warmup_steps'])
        for micro in global_batch.for_rank(self.rank):
            out = self.engine(*self.load(micro, self.data), scale)
            self.engine.backward(out['loss'])
            self.engine.step()
            for k in sums:
                sums[k] += out[k].item() / self.ga
        return sums

    # -- evaluation -----------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self):
        """Rank 0: PSNR / MSE of TAEHV's decoding of the cached Wan latents against the reference VAE's
        decoding of the same latents (`eval/taehv/*`), and side-by-side videos; the other ranks wait."""
        if not self.eval_data:
            return
        self.events.status('evaluating', 'evaluating against the reference VAE')
        if self.rank == 0:
            self._evaluate()
        self.dist.barrier()
        self.events.status('training', 'training')

    def _evaluate(self):
        from models.taehv.train_parts import clip_pixels, mse_psnr, side_by_side
        from utils.media import write_video
        taehv = self.engine.module.taehv
        taehv.eval()
        mses, psnrs, enc, videos = [], [], [], 0
        for name, data in self.eval_data.items():
            for item in data.dataset.items:
                pixels = clip_pixels(item)[None].to(self.device)
                latents = data.reader.get(item.id)['latents'][None].to(self.device)
                ref = self.reference(item.id, latents)
                dtype = taehv.encoder[0].weight.dtype
                ours = taehv.decode(latents.to(dtype)).float()
                mse, psnr = mse_psnr(ours, ref)
                mses.append(mse)
                psnrs.append(psnr)
                enc.append(float((taehv.encode(pixels.to(dtype)).float() - latents).pow(2).mean()))
                if videos < self.cfg['eval_videos'] and pixels.shape[2] > 1:
                    path = self.run_dir / 'samples' / f'step{self.step}_{videos:02d}.mp4'
                    write_video(path, side_by_side(pixels[0], ref[0], ours[0]), fps=self.wan.media_spec.framerate)
                    self.events.artifact('video', path.relative_to(self.run_dir), epoch=self.epoch, step=self.step,
                                         dataset=name, item=item.id, layout='original | reference VAE | TAEHV')
                    videos += 1
        taehv.train()
        self.log_metric('eval/taehv/mse', sum(mses) / len(mses))
        self.log_metric('eval/taehv/psnr', sum(psnrs) / len(psnrs))
        self.log_metric('eval/taehv/encoder_mse', sum(enc) / len(enc))

    def reference(self, item_id, latents):
        """The reference VAE's reconstruction of a cached latent, [1, 3, F, H, W] in [-1, 1]."""
        if item_id not in self.references:
            if getattr(self, 'ref_vae', None) is None:
                from models.wan import weights
                self.ref_vae = weights.load_vae(self.wan.ckpt, torch.float32).to(self.device).eval()
                c = self.ref_vae.config
                self.ref_stats = [torch.tensor(v, device=self.device).view(1, -1, 1, 1, 1) for v in
                                  (c.latents_mean, c.latents_std)]
            mean, std = self.ref_stats
            self.references[item_id] = self.ref_vae.decode(latents * std + mean).sample.float().clamp(-1, 1).cpu()
        return self.references[item_id].to(self.device)

    # -- saving ---------------------------------------------------------------------------------
    def save_model(self, name):
        """<run>/<name>/taehv.pth in the published layout (loads in models.taehv and the reference code)."""
        from models.taehv.model import save_taehv
        from utils.fsutil import atomic_save
        if self.rank == 0:
            path = self.run_dir / name / 'taehv.pth'
            atomic_save(path, lambda tmp: save_taehv(self.engine.module.taehv, tmp))
            self.events.artifact('model', path.relative_to(self.run_dir), epoch=self.epoch, step=self.step)
        self.saved_step = self.step
        self.dist.barrier()

    def state_dict(self):
        return {'step': self.step, 'epoch': self.epoch, 'batch_in_epoch': self.batch_in_epoch,
                'examples': self.examples, 'seed': self.cfg['seed'], 'stages': 1, 'dp_world': self.world,
                'grad_accum': self.ga}

    def save_checkpoint(self):
        self.saver.save_checkpoint(f'step{self.step}', self.state_dict())
        self.last_checkpoint_time = time.time()

    def resume(self, ckpt):
        state = self.saver.restore(ckpt, self.scheduler)
        self.step, self.epoch = state['step'], state['epoch']
        self.batch_in_epoch, self.examples = state['batch_in_epoch'], state['examples']
        print(f'resumed from {ckpt}: step {self.step}, epoch {self.epoch}, batch {self.batch_in_epoch}', flush=True)

    # -- control, logging -----------------------------------------------------------------------
    def poll_control(self):
        """Control files (rank 0) and SIGTERM (any rank), agreed on by every rank after each step."""
        control = self.run_dir / 'control'
        asked = {n for n in CONTROL if self.rank == 0 and (control / n).exists()}
        for name in asked:
            (control / name).unlink(missing_ok=True)
        minutes = self.cfg.get('checkpoint_every_n_minutes')
        if self.rank == 0 and minutes and time.time() - self.last_checkpoint_time >= minutes * 60:
            asked.add('checkpoint')
        flags = [int(n in asked) for n in CONTROL]
        flags[0] |= int(self.stop_requested)
        t = torch.tensor(flags, dtype=torch.int64, device=self.device)
        self.dist.all_reduce(t, op=self.dist.ReduceOp.MAX)
        return {name: bool(v) for name, v in zip(CONTROL, t.tolist())}

    def log_metric(self, name, value):
        self.events.metric(name, self.step, value, epoch=self.epoch)
        if self.tb is not None:
            self.tb.add_scalar(name, value, self.step)

    def report(self, losses, lr, started, start_step, steps_in_epoch):
        for k, v in losses.items():
            self.log_metric('train/loss' if k == 'loss' else f'train/loss_{k}', v)
        self.log_metric('train/lr', lr)
        norm = self.engine.get_global_grad_norm()
        if norm is not None:
            self.log_metric('train/grad_norm', float(norm))
        rate = (self.step - start_step) / max(1e-9, time.time() - started)
        self.events.progress(phase='train', step=self.step, total_steps=self.total_steps, epoch=self.epoch,
                             total_epochs=self.cfg['epochs'], epoch_step=self.batch_in_epoch,
                             steps_per_epoch=steps_in_epoch, steps_per_s=round(rate, 4),
                             examples_per_s=round(rate * self.ga * self.world * self.cfg['micro_batch_size_per_gpu'], 4),
                             eta_s=round((self.total_steps - self.step) / rate, 1) if rate else None)

    # -- the loop -------------------------------------------------------------------------------
    def run(self):
        cfg = self.cfg
        self.events.status('starting', 'loading the model')
        self.prepare_data()
        if self.args.cache_only:
            self.events.status('done', 'cache complete')
            return self.close()
        self.build_engine()
        if self.resume_from:
            self.resume(self.resume_from)
        if self.rank == 0:
            from torch.utils.tensorboard import SummaryWriter
            self.tb = SummaryWriter(str(self.run_dir / 'tensorboard'))
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, 'stop_requested', True))
        self.events.status('training', 'training')
        if cfg['eval_before_first_step'] and self.step == 0:
            self.evaluate()
        started, start_step = time.time(), self.step
        while self.step < self.total_steps:
            batches = self.data.global_batches(self.epoch)
            while self.batch_in_epoch < len(batches) and self.step < self.total_steps:
                lr = self.optimizer.param_groups[0]['lr']
                losses = self.train_step(batches[self.batch_in_epoch])
                self.examples += self.data.examples_in(batches[self.batch_in_epoch])
                self.step += 1
                self.batch_in_epoch += 1
                self.report(losses, lr, started, start_step, len(batches))
                ctl = self.poll_control()
                last = self.step >= self.total_steps
                if ctl['save'] or ctl['save_quit']:
                    self.save_model(f'step{self.step}')
                every = cfg['checkpoint_every_n_steps']
                if (ctl['checkpoint'] or ctl['stop'] or ctl['save_quit'] or (every and self.step % every == 0)) and not last:
                    self.save_checkpoint()
                if (ctl['stop'] or ctl['save_quit']) and not last:
                    self.events.status('stopped', f'stopped at step {self.step} on request; resume from checkpoints/step{self.step}')
                    return self.close()
            if self.batch_in_epoch >= len(batches):
                self.end_epoch()
        if not (self.run_dir / 'checkpoints' / f'step{self.step}' / 'trainer_state.json').is_file():
            self.save_checkpoint()
        if self.saved_step != self.step:
            self.save_model(f'step{self.step}')       # max_steps ended the run inside an epoch
        self.events.status('done', f'finished: {self.step} steps')
        return self.close()

    def end_epoch(self):
        done = self.epoch
        last = self.step >= self.total_steps
        if (self.cfg['save_every_n_epochs'] and done % self.cfg['save_every_n_epochs'] == 0) or last:
            self.save_model(f'epoch{done}')
        if done % self.cfg['eval_every_n_epochs'] == 0 or last:
            self.evaluate()
        self.epoch += 1
        self.batch_in_epoch = 0
        every = self.cfg['checkpoint_every_n_epochs']
        if every and done % every == 0 and not last:
            self.save_checkpoint()

    def close(self):
        if self.tb is not None:
            self.tb.close()


def load_setup(args, world_size):
    """Config, the Wan adapter (no weights yet), dataset configs; refuses (exit 2) what cannot run."""
    from models.taehv.config import load_taehv_config
    from models.wan.adapter import WanAdapter
    try:
        cfg = load_taehv_config(args.config, world_size=world_size)
        wan = WanAdapter({'model': cfg['wan'], 'adapter': None})
        size = wan.media_spec.size_multiple
        datasets = {e['name']: load_dataset_config(e['config'], size) for e in cfg['eval_datasets']}
        return cfg, wan, load_dataset_config(cfg['dataset'], size), datasets
    except (ConfigError, FileNotFoundError, KeyError, ValueError) as e:
        refuse(str(e).strip("'\""), args.run_dir, int(os.environ.get('RANK', '0')))


def main(argv=None):
    args = parse_args(argv, description=__doc__)      # train.py's flags
    world_size, rank = int(os.environ.get('WORLD_SIZE', '1')), int(os.environ.get('RANK', '0'))
    cfg, wan, dataset_config, eval_configs = load_setup(args, world_size)
    if args.dump_dataset:
        from utils.train_data import dump_dataset_report
        dump_dataset_report(cfg, wan, dataset_config, Path(args.run_dir) if args.run_dir else None, world_size)
        return 0
    resume_ckpt, run_dir = resume_and_run_dir(args, cfg, world_size, rank)
    return run_distributed(args, cfg, run_dir, lambda run_dir, events: TAEHVTrainer(
        args, cfg, wan, dataset_config, eval_configs, run_dir, events, resume_ckpt))


if __name__ == '__main__':
    sys.exit(main())
