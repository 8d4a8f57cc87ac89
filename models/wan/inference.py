"""Wan video generation for previews and tests: diffusers' Wan pipelines built from the components our
own loaders return, so official, Diffusers and ComfyUI checkpoint layouts all generate.

    gen = WanGenerator.load({'ckpt_path': '/models/Wan2.1-T2V-1.3B'}, device='cuda')
    gen.use_lora('epoch2', [('run/epoch2/adapter_model.safetensors', 'main')], strength=1.0)
    frames = gen.generate('a red fox', width=832, height=480, frames=81, steps=30, seed=42)  # uint8 [F, H, W, 3]
    gen.use_lora(None)                                              # back to the base model

The base model loads once; LoRAs are peft adapters loaded with `load_lora_weights` and removed again
with `delete_adapters`, so one LoRA never leaks into the next generation. Wan2.2 A14B: `transformer` is
the high-noise expert and `transformer_2` the low-noise one (diffusers' convention); a LoRA file made
for one expert goes into that expert only, a single-expert ('main') LoRA into both.

Sizes and defaults are plain data (no torch), so the studio imports them to check forms.
"""

import math
from pathlib import Path

from .variants import VARIANTS

SIZE_AREAS = {                      # pixel areas of the sizes Wan was trained at; aspect ratio kept
    '480p': 832 * 480,
    '720p': 1280 * 720,
    'tiny': 64 * 64,                # what a machine without a GPU can make in seconds (the tiny demo model)
}
SUPPORTED_AREAS = {                 # the areas each variant generates well at
    'wan2.1-t2v-1.3b': ('480p',),
    'wan2.1-t2v-14b': ('480p', '720p'),
    'wan2.1-i2v-14b': ('480p', '720p'),
    'wan2.2-t2v-a14b': ('480p', '720p'),
    'wan2.2-i2v-a14b': ('480p', '720p'),
    'wan2.2-ti2v-5b': ('720p',),
}
# Sampling defaults of the official Wan configs (wan/configs/*.py, generate.py).
DEFAULTS = {
    'wan2.1-t2v-1.3b': dict(steps=50, shift=5.0, guidance=5.0, guidance_low=None, frames=81),
    'wan2.1-t2v-14b': dict(steps=50, shift=5.0, guidance=5.0, guidance_low=None, frames=81),
    'wan2.1-i2v-14b': dict(steps=40, shift=3.0, guidance=5.0, guidance_low=None, frames=81),
    'wan2.2-t2v-a14b': dict(steps=40, shift=12.0, guidance=4.0, guidance_low=3.0, frames=81),
    'wan2.2-i2v-a14b': dict(steps=40, shift=5.0, guidance=3.5, guidance_low=3.5, frames=81),
    'wan2.2-ti2v-5b': dict(steps=50, shift=5.0, guidance=5.0, guidance_low=None, frames=121),
}
NEGATIVE_PROMPT = ('色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，'
                   'JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，'
                   '手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走')   # sample_neg_prompt of the Wan configs
TRAIN_TIMESTEPS = 1000


class GenerationError(ValueError):
    """A request the model cannot do (wrong size, frame count, missing image); the message says which value."""


class Stopped(Exception):
    """Raised from a step callback to abandon the generation in progress."""


# --------------------------------------------------------------------------------------------
# Sizes, frames, expert switch (no torch)
# --------------------------------------------------------------------------------------------

def propose_size(width, height, multiple=16, area='480p'):
    """The generation size nearest to an image's aspect ratio at a trained area: (w, h), multiples of `multiple`."""
    if width <= 0 or height <= 0:
        raise GenerationError(f'image size {width}x{height} is not a size')
    target = SIZE_AREAS[area]
    scale = math.sqrt(target / (width * height))
    w = max(multiple, round(width * scale / multiple) * multiple)
    h = max(multiple, round(height * scale / multiple) * multiple)
    return int(w), int(h)


def check_size(variant_id, width, height):
    m = VARIANTS[variant_id].size_multiple
    for name, v in (('width', width), ('height', height)):
        if not isinstance(v, int) or isinstance(v, bool) or v < m or v % m:
            raise GenerationError(f'{name} = {v!r}: {variant_id} needs a multiple of {m} (at least {m})')


def check_frames(frames):
    if not isinstance(frames, int) or isinstance(frames, bool) or frames < 1 or (frames - 1) % 4:
        raise GenerationError(f'frames = {frames!r}: must be 4n+1 (1, 5, 9, ... 81)')


def shifted_sigmas(steps, shift):
    """The flow-matching noise levels (1 -> 0) a sampler visits: linear, then shifted like Wan does."""
    out = []
    for i in range(steps):
        s = 1.0 - i / steps
        out.append(shift * s / (1 + (shift - 1) * s))
    return out


def expert_switch_step(steps, shift, boundary):
    """Wan2.2 A14B: how many of `steps` run on the high-noise expert (timestep >= boundary)."""
    return sum(1 for s in shifted_sigmas(steps, shift) if s >= boundary)


# --------------------------------------------------------------------------------------------
# The generator
# --------------------------------------------------------------------------------------------

def inference_checkpoint(model_cfg):
    """The checkpoint with every transformer inference needs: a Wan2.2 A14B generates with both experts even
    when training used one (`expert`, `min_t`/`max_t`, or a `transformer_path` naming one expert); the other
    comes from `transformer_paths[expert]` when given, else from ckpt_path."""
    from .checkpoints import inspect_checkpoint
    base = {k: model_cfg[k] for k in ('ckpt_path', 'llm_path') if model_cfg.get(k)}
    first = {**base, **({'transformer_path': model_cfg['transformer_path']} if model_cfg.get('transformer_path') else {})}
    ckpt = inspect_checkpoint(first)
    extra = model_cfg.get('transformer_paths') or {}
    for expert in ckpt.variant.experts:
        if expert in ckpt.transformers and expert not in extra:
            continue
        table = {**base, 'expert': expert}
        if extra.get(expert):
            table['transformer_path'] = extra[expert]
        other = inspect_checkpoint(table)
        ckpt.transformers[expert] = other.transformers[expert]
        ckpt.transformer_config[expert] = other.transformer_config[expert]
    return ckpt


class WanGenerator:
    def __init__(self, ckpt, parts, device, dtype, offload=False):
        self.ckpt = ckpt
        self.variant = ckpt.variant
        self.parts = parts                    # tokenizer, text_encoder, vae, transformer, transformer_2, image_*
        self.device = device
        self.dtype = dtype
        self.offload = offload                # components wait in CPU memory and visit the GPU when they run
        self._pipes = {}
        self._lora = None                     # (key, adapter name, components holding it)
        self._serial = 0

    @classmethod
    def load(cls, model_cfg, device='cpu', dtype=None, offload=None):
        """Load the base model once: transformer(s), VAE, UMT5 and (Wan2.1 I2V) the CLIP image encoder.

        offload (default: on for Wan2.2 A14B on a GPU, whose two 14B experts and UMT5 hardly fit one card):
        diffusers' model CPU offload, each component moved to the GPU only while it runs."""
        import torch

        from . import weights
        device = torch.device(device)
        dtype = dtype or (torch.bfloat16 if device.type == 'cuda' else torch.float32)
        ckpt = inference_checkpoint(model_cfg)
        experts = ckpt.variant.experts
        if offload is None:
            offload = device.type == 'cuda' and len(experts) == 2
        place = (lambda m: m) if offload else (lambda m: m.to(device))  # noqa: E731
        parts = {'transformer': place(weights.load_transformer(ckpt, experts[0], dtype).eval()),
                 'transformer_2': None, 'image_encoder': None, 'image_processor': None}
        if len(experts) == 2:
            parts['transformer_2'] = place(weights.load_transformer(ckpt, experts[1], dtype).eval())
        parts['vae'] = place(weights.load_vae(ckpt, torch.float32))          # decoded in float32, as Wan does
        parts['tokenizer'], text_encoder = weights.load_text_encoder(ckpt, dtype)
        parts['text_encoder'] = place(text_encoder)
        loaded = weights.load_image_encoder(ckpt, dtype)
        if loaded is not None:
            parts['image_encoder'], parts['image_processor'] = place(loaded[0]), loaded[1]
        return cls(ckpt, parts, device, dtype, offload)

    # -- pipelines ------------------------------------------------------------------------------
    def pipeline(self, with_image):
        """WanPipeline (text) or WanImageToVideoPipeline (first frame given) over the shared components."""
        kind = 'i2v' if with_image else 't2v'
        if kind not in self._pipes:
            self._pipes[kind] = self._build(kind)
        return self._pipes[kind]

    def _build(self, kind):
        from diffusers import UniPCMultistepScheduler, WanImageToVideoPipeline, WanPipeline
        v = self.variant
        if kind == 't2v' and v.task == 'i2v':
            raise GenerationError(f'{v.id} makes videos from an image: give a test image')
        if kind == 'i2v' and v.task == 't2v':
            raise GenerationError(f'{v.id} makes videos from text only: leave the image out')
        scheduler = UniPCMultistepScheduler(prediction_type='flow_prediction', use_flow_sigmas=True,
                                            flow_shift=DEFAULTS[v.id]['shift'], num_train_timesteps=TRAIN_TIMESTEPS)
        p = self.parts
        common = dict(tokenizer=p['tokenizer'], text_encoder=p['text_encoder'], vae=p['vae'], scheduler=scheduler,
                      transformer=p['transformer'], transformer_2=p['transformer_2'], boundary_ratio=v.boundary,
                      expand_timesteps=v.task == 'ti2v')
        if kind == 't2v':
            pipe = WanPipeline(**common)
        else:
            pipe = WanImageToVideoPipeline(**common, image_encoder=p['image_encoder'],
                                           image_processor=p['image_processor'])
        pipe.set_progress_bar_config(disable=True)
        if self.offload:
            pipe.enable_model_cpu_offload(device=self.device)
        return pipe

    def _transformers(self):
        """(component name, module, expert) of each denoiser."""
        experts = self.variant.experts
        out = [('transformer', self.parts['transformer'], experts[0])]
        if self.parts['transformer_2'] is not None:
            out.append(('transformer_2', self.parts['transformer_2'], experts[1]))
        return out

    # -- LoRAs ----------------------------------------------------------------------------------
    def use_lora(self, key, files=(), strength=1.0):
        """Make `key` (files: [(path, expert)]) the only active LoRA, at `strength`; None = the base model.

        A different key unloads the previous LoRA first (its adapter layers are deleted), so nothing of it
        stays in the network; the same key only changes the strength."""
        if self._lora and self._lora[0] != key:
            _, name, holders = self._lora
            for module in holders:
                module.delete_adapters([name])
            self._lora = None
        if key is None:
            return
        if self._lora is None:
            self._serial += 1
            name = f'lora{self._serial}'
            holders = self._load(name, files)
            self._lora = (key, name, holders)
        _, name, holders = self._lora
        for module in holders:
            module.set_adapters([name], [float(strength)])

    def _load(self, name, files):
        pipe = self.pipeline(self.variant.task != 't2v')
        holders = []
        for path, expert in files:
            for component, module, module_expert in self._transformers():
                if expert not in ('main', module_expert):
                    continue
                pipe.load_lora_weights(str(Path(path).parent), weight_name=Path(path).name, adapter_name=name,
                                       load_into_transformer_2=component == 'transformer_2')
                holders.append(module)
        if not holders:
            experts = ', '.join(e for _, e in files)
            raise GenerationError(f'the LoRA ({experts}) matches no expert of {self.variant.id}')
        return holders

    # -- one video ------------------------------------------------------------------------------
    def generate(self, prompt, *, width, height, frames, steps, seed, guidance=5.0, guidance_low=None,
                 shift=None, negative_prompt=NEGATIVE_PROMPT, image=None, on_step=None, on_latents=None,
                 on_final=None):
        """uint8 frames [F, H, W, 3]. `image`: a PIL image already fitted to width x height (i2v, ti2v).
        on_step(done, total) is called after every denoising step; it may raise Stopped.
        on_latents(done, x0) too, with the sampler's clean-video estimate after that step (normalised Wan
        latents [1, C, T, h, w], as the VAE decodes them): live previews decode it (models/taehv/preview.py).
        on_final(latents) gets the final latents before the VAE decodes them (a fast TAEHV video first)."""
        import numpy as np
        import torch
        from diffusers import UniPCMultistepScheduler
        check_size(self.variant.id, width, height)
        check_frames(frames)
        pipe = self.pipeline(image is not None)
        shift = DEFAULTS[self.variant.id]['shift'] if shift is None else shift
        pipe.scheduler = UniPCMultistepScheduler.from_config(pipe.scheduler.config, flow_shift=float(shift))

        def step_end(_pipe, i, _t, kwargs):
            if on_step:
                on_step(i + 1, steps)
            if on_latents:
                from models.taehv.preview import x0_of
                on_latents(i + 1, x0_of(_pipe, kwargs['latents']))
            return kwargs

        kwargs = dict(prompt=prompt, negative_prompt=negative_prompt, height=height, width=width, num_frames=frames,
                      num_inference_steps=steps, guidance_scale=float(guidance), output_type='latent',
                      generator=torch.Generator('cpu').manual_seed(int(seed)), callback_on_step_end=step_end)
        if self.variant.two_experts:
            kwargs['guidance_scale_2'] = float(guidance if guidance_low is None else guidance_low)
        if image is not None:
            kwargs['image'] = image
        with torch.inference_mode():
            latents = pipe(**kwargs).frames
            if on_final:
                on_final(latents)
            video = decode_latents(pipe, latents)[0]             # float [F, H, W, 3] in 0..1
        return (np.clip(video, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def decode_latents(pipe, latents):
    """What diffusers' Wan pipelines do after sampling (output_type 'np'), apart so that the final latents can
    be seen first: un-normalise with the VAE's latents_mean / latents_std, decode, post-process."""
    import torch
    from diffusers.utils.torch_utils import get_module_execution_device
    vae = pipe.vae
    latents = latents.to(device=get_module_execution_device(vae), dtype=vae.dtype)
    shape = (1, vae.config.z_dim, 1, 1, 1)
    mean = torch.tensor(vae.config.latents_mean).view(shape).to(latents.device, latents.dtype)
    inv_std = 1.0 / torch.tensor(vae.config.latents_std).view(shape).to(latents.device, latents.dtype)
    video = vae.decode(latents / inv_std + mean, return_dict=False)[0]
    out = pipe.video_processor.postprocess_video(video, output_type='np')
    pipe.maybe_free_model_hooks()
    return out
