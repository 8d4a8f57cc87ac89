"""Wan as a flat list of layers for DeepSpeed's pipeline: embedding, one layer per block, output.

The layers wrap the submodules of diffusers' ``WanTransformer3DModel`` (no weights are copied),
so LoRA injected into the transformer by peft trains through them and saves under the
transformer's own parameter names. Each layer takes and returns one tuple of tensors, the form
DeepSpeed sends between pipeline stages:

    EmbedLayer   (x_t, timestep, text, [cond], [clip], expert) ->
    BlockLayer   (hidden, context, timestep_proj, temb, grid, expert) -> the same tuple
    OutputLayer  (hidden, context, timestep_proj, temb, grid, expert) -> prediction [B, C, F, H, W]

With two experts (Wan2.2 A14B, both trained in one run) every layer holds the matching part of
both networks and routes each sample to the expert its timestep chose (``expert`` = 0 high noise,
1 low noise), so one pipeline trains both.
"""

import torch
import torch.nn as nn
from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed


def grad_ready(layer, tensors):
    """DeepSpeed runs backward from every floating-point tensor a stage sends to the next one, so each
    must be part of the graph. Frozen embeddings (LoRA training) are not; at a stage boundary they
    become leaves that ask for grad. Inside a stage nothing changes (no gradient is computed that the
    math does not need). `sends_to_next_stage` is set by the pipeline on each stage's last layer."""
    if not getattr(layer, 'sends_to_next_stage', False):
        return tuple(tensors)
    return tuple(t if (not t.is_floating_point() or t.requires_grad) else t.detach().requires_grad_(True)
                 for t in tensors)


def route(expert, num_experts, fn, batch_tensors):
    """Run fn(e, *tensors_of_the_samples_of_expert_e) for each expert and put the results back in
    batch order. fn returns a tuple of tensors with a leading batch dim."""
    if num_experts == 1:
        return fn(0, *batch_tensors)
    outputs = None
    for e in range(num_experts):
        sel = (expert == e).nonzero(as_tuple=True)[0]
        if sel.numel() == 0:
            continue
        result = fn(e, *[t.index_select(0, sel) for t in batch_tensors])
        if outputs is None:
            outputs = [r.new_zeros((expert.shape[0],) + r.shape[1:]) for r in result]
        outputs = [o.index_copy(0, sel, r) for o, r in zip(outputs, result)]
    return tuple(outputs)


class EmbedLayer(nn.Module):
    def __init__(self, experts, has_cond, has_clip, compute_dtype):
        super().__init__()
        self.patch_embedding = nn.ModuleList([t.patch_embedding for t in experts])
        self.condition_embedder = nn.ModuleList([t.condition_embedder for t in experts])
        self.patch_size = tuple(experts[0].config.patch_size)
        self.has_cond = has_cond
        self.has_clip = has_clip
        self.compute_dtype = compute_dtype

    def forward(self, inputs):
        # 1. unpack: x_t [B, C, F, H, W], timestep [B] (x1000), text [B, 512, D_text], cond [B, C', F, H, W],
        #    clip [B, 257, D_clip], expert [B] int64
        x, timestep, text, *extra, expert = inputs
        cond = extra.pop(0) if self.has_cond else None
        clip = extra.pop(0) if self.has_clip else None
        x = x.to(self.compute_dtype)
        if cond is not None:
            x = torch.cat([x, cond.to(self.compute_dtype)], dim=1)
        batch, _, frames, height, width = x.shape
        p_t, p_h, p_w = self.patch_size
        grid = torch.tensor([frames // p_t, height // p_h, width // p_w], device=x.device).expand(batch, 3)

        def embed(e, x, timestep, text, *maybe_clip):
            # 2. patchify: [B, C, F, H, W] -> [B, L, D] with L = F/pt * H/ph * W/pw
            hidden = self.patch_embedding[e](x).flatten(2).transpose(1, 2).contiguous()
            # 3. time, text (and image) conditioning: temb [B, D], timestep_proj [B, 6, D], context [B, L_ctx, D]
            image = maybe_clip[0].to(self.compute_dtype) if maybe_clip else None
            temb, timestep_proj, context, image_ctx = self.condition_embedder[e](
                timestep, text.to(self.compute_dtype), image)
            timestep_proj = timestep_proj.unflatten(1, (6, -1))
            if image_ctx is not None:
                context = torch.cat([image_ctx, context], dim=1)
            return hidden, context, timestep_proj, temb

        tensors = [x, timestep, text] + ([clip] if clip is not None else [])
        hidden, context, timestep_proj, temb = route(expert, len(self.patch_embedding), embed, tensors)
        return grad_ready(self, (hidden, context, timestep_proj, temb, grid, expert))


class BlockLayer(nn.Module):
    def __init__(self, blocks, experts_config):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        cfg = experts_config
        self.patch_size = tuple(cfg.patch_size)
        self.rope = WanRotaryPosEmbed(cfg.attention_head_dim, self.patch_size, cfg.rope_max_seq_len)
        self._rope_cache = {}

    def rotary(self, grid, device):
        f, h, w = (int(v) for v in grid[0].tolist())
        key = (f, h, w, str(device))
        if key not in self._rope_cache:
            p_t, p_h, p_w = self.patch_size
            shape_only = torch.empty((1, 1, f * p_t, h * p_h, w * p_w), device='meta')
            self._rope_cache = {key: tuple(r.to(device) for r in self.rope(shape_only))}
        return self._rope_cache[key]

    def forward(self, inputs):
        hidden, context, timestep_proj, temb, grid, expert = inputs
        rotary = self.rotary(grid, hidden.device)

        def run(e, hidden, context, timestep_proj):
            return (self.blocks[e](hidden, context, timestep_proj, rotary),)

        (hidden,) = route(expert, len(self.blocks), run, [hidden, context, timestep_proj])
        return grad_ready(self, (hidden, context, timestep_proj, temb, grid, expert))


class _Holder(nn.Module):
    """Registers a transformer's bare Parameter (scale_shift_table) inside a layer."""

    def __init__(self, parameter):
        super().__init__()
        self.scale_shift_table = parameter


class OutputLayer(nn.Module):
    def __init__(self, experts):
        super().__init__()
        self.norm_out = nn.ModuleList([t.norm_out for t in experts])
        self.proj_out = nn.ModuleList([t.proj_out for t in experts])
        self.modulation = nn.ModuleList([_Holder(t.scale_shift_table) for t in experts])
        self.patch_size = tuple(experts[0].config.patch_size)

    def forward(self, inputs):
        hidden, context, timestep_proj, temb, grid, expert = inputs
        f, h, w = (int(v) for v in grid[0].tolist())
        p_t, p_h, p_w = self.patch_size

        def out(e, hidden, temb):
            # 1. final adaptive norm: shift, scale from temb [B, D]
            shift, scale = (self.modulation[e].scale_shift_table + temb.unsqueeze(1)).chunk(2, dim=1)
            hidden = (self.norm_out[e](hidden.float()) * (1 + scale) + shift).type_as(hidden)
            # 2. project to patch pixels: [B, L, C * pt * ph * pw]
            hidden = self.proj_out[e](hidden)
            # 3. unpatchify: [B, C, F, H, W]
            batch = hidden.shape[0]
            hidden = hidden.reshape(batch, f, h, w, p_t, p_h, p_w, -1).permute(0, 7, 1, 4, 2, 5, 3, 6)
            return (hidden.flatten(6, 7).flatten(4, 5).flatten(2, 3),)

        (prediction,) = route(expert, len(self.proj_out), out, [hidden, temb])
        return prediction
