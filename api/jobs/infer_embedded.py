"""The embedded backend of the infer job: diffusers' Wan pipelines in this process (models/wan/inference.py).

The base model loads once per job on the job's device (its GPU, or the CPU); each LoRA is loaded when
its first cell comes and unloaded before the next LoRA, strengths are set per cell. With a TAEHV
(`preview_taehv` in the spec: the task's `preview.taehv`), each denoising step's clean-video estimate is
decoded by it into a small looping WebP, the cell's live preview (models/taehv/preview.py), and the final
latents into a full-size video (`video_fast`) before the full VAE decodes them.
"""

import sys
from pathlib import Path

from api.jobs.control import JobError


class EmbeddedBackend:
    def __init__(self, spec, run_dir, control):
        self.spec = spec
        self.run_dir = Path(run_dir)
        self.control = control
        self.gen = None
        self.live = None

    def open(self):
        import torch

        from models.wan.checkpoints import CheckpointError
        from models.wan.inference import WanGenerator
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
        try:
            self.gen = WanGenerator.load(self.spec['model'], device=device)
        except CheckpointError as e:
            raise JobError(f'cannot load the model: {e}') from None
        if self.spec.get('preview_taehv'):
            from models.taehv.model import load_taehv
            from models.taehv.preview import LivePreview
            try:
                model = load_taehv(self.spec['preview_taehv'])
            except (OSError, KeyError, RuntimeError) as e:
                raise JobError(f'cannot load the preview TAEHV {self.spec["preview_taehv"]}: {e}') from None
            self.live = LivePreview(model, device=device, dtype=torch.float16 if device == 'cuda' else torch.float32)

    def generate(self, cell, video_path, on_step, on_preview=None, on_fast=None):
        from PIL import Image

        from models.wan.inference import GenerationError
        from utils.media import MediaError, read_image, write_video
        row = next((r for r in self.spec['loras'] if r and cell['lora'] and r['id'] == cell['lora']['id']), None)
        image = None
        try:
            if row is None:
                self.gen.use_lora(None)
            else:
                self.gen.use_lora(row['id'], [(f['path'], f['expert']) for f in row['files']], cell['strength'])
            if cell['image']:
                path = self.spec['inputs'][cell['input']]['image_path']
                image = Image.fromarray(read_image(path, (cell['width'], cell['height']))[0].numpy())
            frames = self.gen.generate(cell['prompt'], width=cell['width'], height=cell['height'],
                                       frames=cell['frames'], steps=cell['steps'], seed=cell['seed'],
                                       guidance=cell['guidance'], guidance_low=cell['guidance_low'],
                                       shift=cell['shift'], negative_prompt=cell['negative_prompt'], image=image,
                                       on_step=on_step, on_latents=self._previewer(cell, on_preview),
                                       on_final=self._fast(on_fast))
        except (GenerationError, MediaError, FileNotFoundError) as e:
            raise JobError(str(e)) from None
        write_video(video_path, frames, cell['fps'])
        return frames[0]

    def _previewer(self, cell, on_preview):
        if self.live is None or on_preview is None:
            return None

        def on_latents(step, x0):
            if self.live is None:
                return
            try:
                data, ms = self.live.render(x0, cell['fps'])
            except Exception as e:          # a preview is never worth the render: go on without them
                print(f'live previews off: {type(e).__name__}: {e}', file=sys.stderr, flush=True)
                self.live = None
                return
            on_preview(step, data, 'webp', ms)
        return on_latents

    def _fast(self, on_fast):
        if self.live is None or on_fast is None:
            return None

        def on_final(latents):
            if self.live is None:
                return
            try:
                frames = self.live.frames(latents, None)
            except Exception as e:
                print(f'no fast video: {type(e).__name__}: {e}', file=sys.stderr, flush=True)
                return
            on_fast(frames)
        return on_final

    def close(self):
        self.gen = None
        self.live = None
