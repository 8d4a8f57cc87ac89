"""Wan2.1 / Wan2.2 adapter: diffusers' Wan networks behind the trainer's hooks (models/base.py).

Variants: Wan2.1 t2v 1.3B / 14B, Wan2.1 i2v 14B (CLIP image context), Wan2.2 t2v-A14B and
i2v-A14B (two experts split at a timestep boundary), Wan2.2 ti2v-5B (48-channel VAE, 24 fps).
Weights load from the official Wan-AI folder, a Diffusers folder or ComfyUI single files
(models/wan/checkpoints.py finds them, models/wan/weights.py loads them). LoRA is injected with peft on every Linear of every transformer
block, alpha = rank unless set; without an [adapter] table the whole transformer trains.
"""

import re

import torch

from models.base import ModelAdapter, ModelConfigError, dtype_of
from models.wan import checkpoints, weights
from models.wan.keymaps import diffusers_to_official, official_state_dict, official_transformer_config
from models.wan.layers import BlockLayer, EmbedLayer, OutputLayer
from models.wan.variants import checkpoint_framerate
from utils import timesteps
from utils.fsutil import atomic_save, atomic_write_json
from utils.losses import elementwise_loss

TEXT_LEN = 512              # UMT5 context the networks were trained with; prompts are zero-padded to it
EXPERT_NAMES = ('high_noise', 'low_noise')   # index 0 handles t >= boundary


def lora_target_modules(transformer, exclude=None):
    """Every nn.Linear inside the transformer blocks (attention q/k/v/o, image k/v, feed-forward), less
    those `exclude` (the [adapter] exclude_modules key) names."""
    names = sorted(name for name, module in transformer.named_modules()
                   if name.startswith('blocks.') and isinstance(module, torch.nn.Linear))
    if exclude:
        names = [n for n in names if not excluded_module(n, exclude)]
        if not names:
            raise ModelConfigError(f'adapter.exclude_modules = {exclude!r} excludes every LoRA target module')
    return names


def excluded_module(name, exclude):
    """peft's exclude_modules rule, tried on the Diffusers name and on the official Wan name (the one
    diffusion-pipe configs use): a string is a regular expression for the whole name; a list matches a
    name exactly or as its dotted suffix."""
    names = [name]
    try:
        names.append(diffusers_to_official(name))
    except KeyError:
        pass
    for n in names:
        if isinstance(exclude, str):
            if re.fullmatch(exclude, n):
                return True
        elif n in exclude or any(n.endswith('.' + e) for e in exclude):
            return True
    return False


def padded_text(embeddings):
    """[tokens, D] -> [TEXT_LEN, D]: the prompt's tokens, then zeros, as the Wan pipelines feed the network."""
    out = torch.zeros(TEXT_LEN, embeddings.shape[-1])
    n = min(len(embeddings), TEXT_LEN)
    out[:n] = embeddings[:n]
    return out


def official_clip_pixels(frames, processor):
    """The first frames [B, 3, H, W] in [-1, 1] -> CLIP pixel values as the official Wan2.1 I2V code makes them
    (CLIPModel.visual): resized to the processor's size with torch's bicubic interpolation (no antialiasing,
    no crop, no clamp), mapped to [0, 1] and normalised with its mean / std. A transformers image processor
    gives other values: its PIL backend rounds to 8 bits (down, for some exact 8-bit values) and resizes
    with an antialiasing filter."""
    size = (processor.size['height'], processor.size['width'])
    x = torch.nn.functional.interpolate(frames.float(), size=size, mode='bicubic', align_corners=False)
    x = x.mul(0.5).add(0.5)
    mean = torch.tensor(processor.image_mean, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(processor.image_std, device=x.device).view(1, -1, 1, 1)
    return (x - mean) / std


def init_lora(transformer, dtype, generator):
    """LoRA weights created in `dtype`, trainable: A as nn.Linear initialises its weights (kaiming-uniform,
    a = sqrt(5)), B zero, so the adapter starts as a no-op. peft creates them in the dtype of the layer they
    wrap (float8 under a float8 base), which would quantize A; they are made again here, in sorted order."""
    import math
    for name, p in sorted(transformer.named_parameters()):
        if '.lora_' not in name:
            continue
        value = torch.zeros(p.shape)
        if '.lora_A.' in name:
            torch.nn.init.kaiming_uniform_(value, a=math.sqrt(5), generator=generator)
        p.data = value.to(device=p.device, dtype=dtype)
        p.requires_grad_(True)


def choose_experts(variant, model_config):
    """Both experts of a two-expert variant, or the one whose timestep range holds [min_t, max_t]."""
    boundary = model_config.get('boundary') or variant.boundary
    if model_config.get('max_t', 1.0) <= boundary:
        return ['low_noise']
    if model_config.get('min_t', 0.0) >= boundary:
        return ['high_noise']
    return list(EXPERT_NAMES)


class WanAdapter(ModelAdapter):
    name = 'wan'
    checkpointable_layers = ['BlockLayer']

    def __init__(self, config):
        super().__init__(config)
        mc = self.model_config
        try:
            self.ckpt = checkpoints.inspect_checkpoint(mc)
            if len(self.ckpt.transformers) == 2 and not mc.get('expert'):
                # min_t / max_t wholly on one side of the boundary select that expert alone.
                chosen = choose_experts(self.ckpt.variant, mc)
                if len(chosen) == 1:
                    self.ckpt = checkpoints.inspect_checkpoint({**mc, 'expert': chosen[0]})
        except checkpoints.CheckpointError as e:
            raise ModelConfigError(str(e)) from None
        self.variant = self.ckpt.variant
        self.experts = [e for e in EXPERT_NAMES if e in self.ckpt.transformers] or list(self.ckpt.transformers)
        self.boundary = mc.get('boundary') or self.variant.boundary
        self.dtype = dtype_of(mc.get('dtype', 'bfloat16'))
        self.storage_dtype = dtype_of(mc['transformer_dtype']) if mc.get('transformer_dtype') else self.dtype
        self.adapter_config = config.get('adapter')
        self.t_table = timesteps.timestep_table(mc)
        self.expert_sampling = mc.get('expert_sampling', 'timestep')
        self.transformers = None
        self.vae = self.text_encoder = self.tokenizer = self.image_encoder = self.image_processor = None

    @property
    def num_blocks(self):
        return self.ckpt.transformer_config[self.experts[0]]['num_layers']

    # -- data side ----------------------------------------------------------------------------
    @property
    def media_spec(self):
        return self.variant.media_spec(checkpoint_framerate(self.variant, self.model_config.get('ckpt_path')))

    def cache_identity(self):
        """The encoders' files and the dtypes they run in: the VAE and the image encoder compute in `dtype`
        (their latents change with it), the text encoder too, and stores its block weights in float8 with
        `text_encoder_fp8` (its embeddings change with either)."""
        ident = self.ckpt.identity()
        dtype = ['dtype', str(self.dtype).removeprefix('torch.')]
        image = ident.get('image_encoder')
        if image and self.ckpt.image_processor_dir is None:
            image = image + [['preprocess', 'official-bicubic']]     # official folders: official_clip_pixels
        text_storage = 'float8_e4m3fn' if self.model_config.get('text_encoder_fp8') else None
        return {'variant': self.variant.id, 'vae': ident.get('vae') + [dtype], 'image_encoder': image and image + [dtype],
                'text_encoder': ident.get('text_encoder') + [dtype, ['storage', text_storage]], 'text_len': TEXT_LEN}

    @property
    def uses_cond(self):
        return self.variant.i2v_condition

    @property
    def uses_clip(self):
        return self.variant.uses_clip

    # -- encoders (caching phase) -------------------------------------------------------------
    def load_encoders(self, device):
        self.device = torch.device(device)
        self.vae = weights.load_vae(self.ckpt, self.dtype).to(self.device).eval()
        fp8 = self.model_config.get('text_encoder_fp8')
        dtype_for = weights.stored_in(torch.float8_e4m3fn, weights.TEXT_ENCODER_KEEP, 'encoder.block.') if fp8 else None
        self.tokenizer, self.text_encoder = weights.load_text_encoder(self.ckpt, self.dtype, dtype_for)
        self.text_encoder.to(self.device).eval()
        if self.uses_clip:
            self.image_encoder, self.image_processor = weights.load_image_encoder(self.ckpt, self.dtype)
            self.image_encoder.to(self.device).eval()
        cfg = self.vae.config
        self._latents_mean = torch.tensor(cfg.latents_mean, device=self.device).view(1, -1, 1, 1, 1)
        self._latents_std = torch.tensor(cfg.latents_std, device=self.device).view(1, -1, 1, 1, 1)

    def unload_encoders(self):
        self.vae = self.text_encoder = self.tokenizer = self.image_encoder = self.image_processor = None

    def _vae_encode(self, pixels):
        # [B, 3, F, H, W] in [-1, 1] -> normalized latents [B, z, (F-1)/4+1, H/8, W/8] (mean of the posterior)
        latents = self.vae.encode(pixels.to(self.device, self.vae.dtype)).latent_dist.mode()
        return ((latents.float() - self._latents_mean) / self._latents_std)

    @torch.no_grad()
    def encode_media(self, pixels, masks=None):
        out = {'latents': self._vae_encode(pixels)}
        if self.uses_cond:
            if pixels.shape[2] < 2:
                raise ValueError(f'{self.variant.id} trains on videos only (first frame = condition); got a single image')
            # The condition is the encoded clip with every frame but the first blacked out (zero in [-1, 1]).
            cond = torch.zeros_like(pixels)
            cond[:, :, :1] = pixels[:, :, :1]
            out['y'] = self._vae_encode(cond)
        if self.uses_clip:
            if self.ckpt.image_processor_dir is None:     # official folder: the official preprocessing
                pixel_values = official_clip_pixels(pixels[:, :, 0], self.image_processor)
            else:                                         # Diffusers folder: its saved image processor
                first = ((pixels[:, :, 0].float() + 1) / 2).clamp(0, 1)     # [B, 3, H, W] in [0, 1]
                pixel_values = self.image_processor(images=list(first), return_tensors='pt',
                                                    do_rescale=False).pixel_values
            hidden = self.image_encoder(pixel_values=pixel_values.to(self.device, self.dtype),
                                        output_hidden_states=True).hidden_states[-2]
            out['clip_context'] = hidden.float()
        return {k: v.cpu() for k, v in out.items()}

    @torch.no_grad()
    def encode_text(self, captions):
        tokens = self.tokenizer(list(captions), padding='max_length', max_length=TEXT_LEN, truncation=True,
                                add_special_tokens=True, return_attention_mask=True, return_tensors='pt')
        ids = tokens.input_ids.to(self.device)
        mask = tokens.attention_mask.to(self.device)
        hidden = self.text_encoder(ids, mask).last_hidden_state.float()
        lengths = mask.sum(dim=1).tolist()
        return [{'text_embeddings': hidden[i, :n].cpu()} for i, n in enumerate(lengths)]

    # -- the trained network ------------------------------------------------------------------
    def build_diffusion_model(self, seed=0):
        lora = self.adapter_config
        if lora is None and self.storage_dtype.itemsize == 1:
            raise ValueError('transformer_dtype float8 needs LoRA training (full fine-tuning updates every weight)')
        # Frozen weights stored in e.g. float8: only the blocks' linear weights (weights.TRANSFORMER_KEEP),
        # cast to the compute dtype as each layer runs.
        dtype_for = None
        if lora is not None and self.storage_dtype != self.dtype:
            dtype_for = weights.stored_in(self.storage_dtype, weights.TRANSFORMER_KEEP)
        transformers = [weights.load_transformer(self.ckpt, expert, self.dtype, dtype_for) for expert in self.experts]
        for t in transformers:
            t.requires_grad_(lora is None)
        if lora is not None:
            from peft import LoraConfig
            for i, t in enumerate(transformers):
                t.add_adapter(LoraConfig(r=lora['rank'], lora_alpha=lora['alpha'], lora_dropout=lora['dropout'],
                                         target_modules=lora_target_modules(t, lora.get('exclude_modules')),
                                         init_lora_weights=True))
                # same LoRA init whatever the pipeline layout
                init_lora(t, dtype_of(lora['dtype']), torch.Generator().manual_seed(seed + i))
            if lora.get('init_from_existing'):
                self.load_adapter_weights(transformers, lora['init_from_existing'])
        self.transformers = transformers
        return transformers

    def to_layers(self):
        ts = self.transformers
        layers = [EmbedLayer(ts, self.uses_cond, self.uses_clip, self.dtype)]
        for i in range(len(ts[0].blocks)):
            layers.append(BlockLayer([t.blocks[i] for t in ts], ts[0].config))
        layers.append(OutputLayer(ts))
        return layers

    # -- one micro-batch ----------------------------------------------------------------------
    def collate(self, items):
        batch = {'latents': torch.stack([it['latents'] for it in items]).float()}
        batch['text'] = torch.stack([padded_text(it['text_embeddings']) for it in items])
        for key in ('y', 'clip_context'):
            if key in items[0]:
                batch[key] = torch.stack([it[key] for it in items]).float()
        if any(it.get('mask') is not None for it in items):
            h, w = batch['latents'].shape[-2:]
            batch['mask'] = torch.stack([it['mask'] if it.get('mask') is not None else torch.ones(h, w) for it in items])
        if 'uncond_text' in items[0]:
            batch['uncond_text'] = padded_text(items[0]['uncond_text'])
        return batch

    def condition_mask(self, batch, frames_latent, height, width):
        """The i2v mask channels: 1 where the frame is given (the first pixel frame), packed like the
        VAE packs time (the first frame counts 4 times), -> [B, 4, F', H', W']."""
        stride = self.variant.vae_stride[0]
        frames = (frames_latent - 1) * stride + 1
        mask = torch.zeros(batch, 1, frames, height, width)
        mask[:, :, 0] = 1
        mask = torch.cat([mask[:, :, :1].repeat_interleave(stride, dim=2), mask[:, :, 1:]], dim=2)
        return mask.view(batch, -1, stride, height, width).transpose(1, 2)

    def timestep_table(self, height, width):
        """The training timesteps' table for latents of this size (it depends on it with flux_shift alone)."""
        if self.model_config.get('flux_shift') and not self.model_config.get('shift'):
            return timesteps.timestep_table(self.model_config, latent_tokens=(height // 2) * (width // 2))
        return self.t_table

    def expert_shares(self, buckets=()):
        """{expert: expected fraction of the training samples it gets} with two experts, else None.
        buckets: [((width, height, frames), weight)], used only when the timesteps depend on the size."""
        if len(self.experts) != 2:
            return None
        _, sh, sw = self.variant.vae_stride
        sizes = [((h // sh, w // sw), n) for (w, h, _), n in buckets] or [((0, 0), 1)]
        total = sum(n for _, n in sizes)
        high = sum(n * timesteps.high_noise_share(self.timestep_table(*hw), self.boundary) for hw, n in sizes) / total
        if self.expert_sampling == 'balanced' and 0 < high < 1:
            high = 0.5
        return {'high_noise': high, 'low_noise': 1 - high}

    def sample_experts(self, inputs):
        return inputs[-1] if len(self.experts) == 2 else None

    def expert_parameters(self):
        if len(self.experts) != 2:
            return None
        return [[p for p in t.parameters() if p.requires_grad] for t in self.transformers]

    def prepare_inputs(self, batch, generator, timestep_quantile=None):
        x0 = batch['latents']
        b, _, f, h, w = x0.shape
        table = self.timestep_table(h, w)
        if self.expert_sampling == 'balanced' and len(self.experts) == 2 and timestep_quantile is None:
            t = timesteps.sample_balanced(table, self.boundary, b, generator)
        else:
            t = timesteps.sample(table, b, generator, timestep_quantile)
        noise = torch.randn(x0.shape, generator=generator)
        t_ = t.view(-1, 1, 1, 1, 1)
        x_t = (1 - t_) * x0 + t_ * noise
        target = noise - x0
        text = batch['text']
        uncond = self.config.get('uncond_fraction', 0.0)
        if uncond and timestep_quantile is None and 'uncond_text' in batch:
            drop = torch.rand(b, generator=generator) < uncond
            if drop.any():
                text = text.clone()
                text[drop] = batch['uncond_text']
        if len(self.experts) == 2:
            expert = (t < self.boundary).long()        # 0 = high noise expert
        else:
            expert = torch.zeros(b, dtype=torch.long)
        inputs = [x_t, t * 1000, text]
        if self.uses_cond:
            inputs.append(torch.cat([self.condition_mask(b, f, h, w), batch['y']], dim=1))
        if self.uses_clip:
            inputs.append(batch['clip_context'])
        inputs.append(expert)
        mask = batch.get('mask')
        mask = mask.view(b, 1, 1, h, w) if mask is not None else torch.zeros(0)
        return tuple(inputs), (target, mask)

    def loss(self, output, labels):
        target, mask = labels
        loss = elementwise_loss(output.float(), target.float(), self.config)
        if mask.numel():
            loss = loss * mask
        return loss.mean()

    # -- results ------------------------------------------------------------------------------
    def trainable_state_dict(self, local_parameters=None):
        """{expert: {diffusers parameter name: tensor}} of the trained weights this process holds."""
        local = None if local_parameters is None else {id(p) for p in local_parameters}
        out = {}
        for expert, t in zip(self.experts, self.transformers):
            sd = {}
            for name, p in t.named_parameters():
                if p.requires_grad and (local is None or id(p) in local):
                    sd[name.replace('.default.', '.')] = p.detach()
            out[expert] = sd
        return out

    def adapter_file_name(self, expert):
        return 'adapter_model.safetensors' if len(self.experts) == 1 else f'adapter_model_{expert}.safetensors'

    def save_adapter(self, save_dir, state_dicts, metadata=None):
        """ComfyUI-format LoRA: diffusion_model.<official module>.lora_A/B.weight, one file per expert."""
        from safetensors.torch import save_file
        lora = self.adapter_config
        save_dtype = dtype_of(self.config.get('save_dtype', 'bfloat16'))
        targets = set()
        for expert, sd in state_dicts.items():
            out = {}
            for name, tensor in sd.items():
                module, suffix = name.rsplit('.lora_', 1)
                official = diffusers_to_official(module)
                targets.add(official.split('.', 2)[-1] if official.startswith('blocks.') else official)
                out[f'diffusion_model.{official}.lora_{suffix}'] = tensor.to(save_dtype).contiguous()
                if lora['alpha'] != lora['rank'] and suffix == 'A.weight':
                    out[f'diffusion_model.{official}.alpha'] = torch.tensor(float(lora['alpha']))
            meta = {'format': 'pt', 'odeo.variant': self.variant.id, 'odeo.rank': str(lora['rank']),
                    'odeo.alpha': str(lora['alpha']), 'odeo.expert': expert, **(metadata or {})}
            atomic_save(save_dir / self.adapter_file_name(expert), lambda p, o=out, m=meta: save_file(o, p, metadata=m))
        atomic_write_json(save_dir / 'adapter_config.json', {
            'peft_type': 'LORA', 'r': lora['rank'], 'lora_alpha': lora['alpha'], 'lora_dropout': lora['dropout'],
            'target_modules': sorted(targets), 'base_model_name_or_path': self.variant.id,
            'experts': list(state_dicts), 'format': 'comfyui'})
        return {expert: self.adapter_file_name(expert) for expert in state_dicts}

    def save_full(self, save_dir, state_dicts, metadata=None):
        """Full fine-tune: the official parameter names and config.json, loadable as transformer_path."""
        from safetensors.torch import save_file
        save_dtype = dtype_of(self.config.get('save_dtype', 'bfloat16'))
        saved = {}
        for expert, sd in state_dicts.items():
            saved[expert] = '.' if len(state_dicts) == 1 else f'{expert}_model'
            folder = save_dir / saved[expert]
            out = {k: v.to(save_dtype).contiguous() for k, v in official_state_dict(sd).items()}
            atomic_save(folder / 'diffusion_pytorch_model.safetensors',
                        lambda p, o=out: save_file(o, p, metadata={'format': 'pt', **(metadata or {})}))
            # Official names want the official config.json, whatever layout the run loaded from.
            atomic_write_json(folder / 'config.json',
                              official_transformer_config(self.variant.task, self.ckpt.transformer_config[expert]))
        return saved

    def load_adapter_weights(self, transformers, path):
        """Start from a saved LoRA (ComfyUI format, as we save it): a folder or a .safetensors file."""
        from pathlib import Path

        from safetensors.torch import load_file
        path = Path(path)
        for expert, t in zip(self.experts, transformers):
            file = path / self.adapter_file_name(expert) if path.is_dir() else path
            if not file.exists() and path.is_dir():
                file = path / 'adapter_model.safetensors'
            if not file.exists():
                raise FileNotFoundError(f'init_from_existing: {file} not found')
            saved = load_file(file)
            wanted = {}
            for name, p in t.named_parameters():
                if '.lora_' in name:
                    module, suffix = name.replace('.default.', '.').rsplit('.lora_', 1)
                    wanted[f'diffusion_model.{diffusers_to_official(module)}.lora_{suffix}'] = p
            missing = sorted(set(wanted) - set(saved))
            if missing:
                raise ValueError(f'init_from_existing: {file} lacks {len(missing)} LoRA weights, e.g. {missing[0]} '
                                 f'(rank or model variant differ?)')
            with torch.no_grad():
                for key, p in wanted.items():
                    if saved[key].shape != p.shape:
                        raise ValueError(f'init_from_existing: {file}: {key} has shape {tuple(saved[key].shape)}, '
                                         f'this run needs {tuple(p.shape)}')
                    p.copy_(saved[key])
