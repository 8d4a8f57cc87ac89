"""DeepSpeed pipeline plumbing kept out of the model code: the PipelineModule (with manual split
points), activation checkpointing flavours, and the release of layers other stages run."""

import torch
from deepspeed.pipe import PipelineModule


class StudioPipelineModule(PipelineModule):
    """PipelineModule that also accepts partition_method='manual' with explicit split points
    (`partition_split = [10, 20]`: stage 1 starts at layer 10, stage 2 at layer 20)."""

    def __init__(self, *args, partition_split=None, **kwargs):
        self._manual_split = list(partition_split or [])
        super().__init__(*args, **kwargs)

    def _build(self):
        super()._build()
        # The last layer of every stage but the last hands its outputs to the next stage (see layers.grad_ready).
        if self.stage_id < self.num_stages - 1 and self.forward_funcs:
            self.forward_funcs[-1].sends_to_next_stage = True

    def train(self, mode=True):
        """DeepSpeed calls train() before every step; walking every submodule each time costs more than a
        tiny model's step, so only a real change of mode walks the tree."""
        if getattr(self, '_training_mode', None) == mode:
            return self
        self._training_mode = mode
        return super().train(mode)

    def checkpoint_swapped_only(self):
        """Activation checkpointing for the swapped blocks only (blocks_to_swap without
        activation_checkpointing): the block swapper needs its blocks checkpointed, the rest need not be."""
        self._is_checkpointable = lambda funcs: all(getattr(f, 'swapped', False) for f in funcs)
        self.is_checkpointable_results_interval = None
        self._precompute_checkpointable_values()

    def _partition_layers(self, method='uniform'):
        if method != 'manual':
            return super()._partition_layers(method=method)
        num_layers = len(self._layer_specs)
        parts = [0] + self._manual_split + [num_layers]
        if len(parts) != self.num_stages + 1 or parts != sorted(parts) or parts[-2] >= num_layers:
            raise ValueError(f'partition_split {self._manual_split} does not split {num_layers} layers into '
                             f'{self.num_stages} non-empty stages')
        self.parts = parts
        stage_id = self._topo.get_coord(self.global_rank).pipe
        self._set_bounds(start=parts[stage_id], stop=parts[stage_id + 1])


def release_other_stages(layers, local_layers):
    """Layers this process does not run keep no memory: their weights move to the meta device."""
    local = {id(m) for m in local_layers}
    for layer in layers:
        if id(layer) not in local:
            layer.to('meta')


class _OffloadedCheckpoint(torch.autograd.Function):
    """Activation checkpointing that also parks the saved layer inputs in CPU memory
    (activation_checkpointing = 'unsloth'): forward keeps only a CPU copy of the inputs,
    backward brings them back, recomputes the layer and backpropagates through it. The random
    number generators are put back as they were in forward for the recompute, so dropout draws
    the same mask twice."""

    @staticmethod
    def forward(ctx, fn, *args):
        ctx.fn = fn
        ctx.devices = [a.device if torch.is_tensor(a) else None for a in args]
        ctx.cpu_args = [a.detach().to('cpu', non_blocking=True) if torch.is_tensor(a) else a for a in args]
        ctx.grad_mask = [torch.is_tensor(a) and a.requires_grad for a in args]
        ctx.cpu_rng = torch.get_rng_state()
        ctx.device_type = next((d.type for d in ctx.devices if d is not None and d.type not in ('cpu', 'meta')), None)
        ctx.device_ids, ctx.device_rng = torch.utils.checkpoint.get_device_states(*args)
        with torch.no_grad():
            out = fn(*args)
        return out

    @staticmethod
    def backward(ctx, *grads):
        args = []
        for a, device, needs in zip(ctx.cpu_args, ctx.devices, ctx.grad_mask):
            if torch.is_tensor(a):
                a = a.to(device, non_blocking=True).requires_grad_(needs)
            args.append(a)
        with torch.random.fork_rng(devices=ctx.device_ids, device_type=ctx.device_type or 'cuda'):
            torch.set_rng_state(ctx.cpu_rng)
            if ctx.device_type is not None:
                torch.utils.checkpoint.set_device_states(ctx.device_ids, ctx.device_rng, device_type=ctx.device_type)
            with torch.enable_grad():
                out = ctx.fn(*args)
        out = out if isinstance(out, tuple) else (out,)
        pairs = [(o, g) for o, g in zip(out, grads) if torch.is_tensor(o) and o.requires_grad and g is not None]
        if pairs:
            torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs])
        return (None,) + tuple(a.grad if torch.is_tensor(a) and a.requires_grad else None for a in args)


def checkpoint_function(mode, reentrant=False):
    """The activation_checkpoint_func handed to PipelineModule for a config's setting."""
    if mode == 'unsloth':
        return lambda fn, *args: _OffloadedCheckpoint.apply(fn, *args)

    def checkpoint(fn, *args):
        return torch.utils.checkpoint.checkpoint(fn, *args, use_reentrant=reentrant)
    return checkpoint


class ClippedStep:
    """Gradient clipping done just before the optimizer step, over the trainable parameters only:
    one fused norm per stage, summed across pipeline stages (every stage holds different weights;
    data-parallel replicas already hold the same averaged gradients). It replaces DeepSpeed's own
    clipping, which walks every parameter, frozen ones included, and keeps the norm for the
    `train/grad_norm` metric.

    With several experts (track_experts), an expert that got no sample in the step on any rank takes no
    optimizer step at all (rest_idle_experts)."""

    def __init__(self, optimizer, params, max_norm, pipe_group=None):
        import types
        self.params = [p for p in params if p.requires_grad]
        self.max_norm = max_norm
        self.pipe_group = pipe_group
        self.last_norm = None
        self.expert_params = None
        self.expert_samples = None      # this rank's samples per expert in the current step (the trainer counts)
        self.idle_experts = []
        inner = optimizer.step
        clipper = self

        def step(opt, *args, **kwargs):
            clipper.rest_idle_experts()
            clipper.clip()
            return inner(*args, **kwargs)
        # A method of the optimizer, installed before the LR scheduler wraps optimizer.step.
        optimizer.step = types.MethodType(step, optimizer)

    def track_experts(self, expert_params, device):
        """expert_params: the trained parameters of each expert (those of this stage are kept), or None."""
        if expert_params is None:
            return
        local = {id(p) for p in self.params}
        self.expert_params = [[p for p in params if id(p) in local] for params in expert_params]
        self.expert_samples = torch.zeros(len(expert_params), dtype=torch.int64)
        self.count_device = device

    def count_samples(self, experts):
        """experts: the expert index of each sample of one micro-batch of this rank."""
        self.expert_samples += torch.bincount(experts.cpu(), minlength=len(self.expert_samples))

    def rest_idle_experts(self):
        """Drop the gradients of the experts no rank gave a sample in this step, so that the optimizer skips
        their parameters: no moment, weight-decay or step-counter update (torch's AdamW and ours keep a step
        counter per parameter). Without it, data-parallel ranks would step them on the zeros DeepSpeed's
        gradient all-reduce puts in place of missing gradients. The counts are summed over every rank
        (every pipeline stage and replica), so all decide alike; the count is then reset for the next step."""
        import torch.distributed as dist        # the process group DeepSpeed set up (a plain one in tests)
        self.idle_experts = []
        if self.expert_params is None:
            return
        counts = self.expert_samples.to(self.count_device)
        if dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(counts)
        for e, n in enumerate(counts.tolist()):
            if n == 0:
                self.idle_experts.append(e)
                for p in self.expert_params[e]:
                    p.grad = None
        self.expert_samples.zero_()

    def clip(self):
        import deepspeed.comm as dist
        grads = [p.grad for p in self.params if p.grad is not None]
        if grads:
            sq = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads])) ** 2
        else:
            sq = torch.zeros((), device=self.params[0].device if self.params else 'cpu')
        if self.pipe_group is not None:
            dist.all_reduce(sq, group=self.pipe_group)
        norm = sq.sqrt()
        self.last_norm = float(norm)
        if self.max_norm and grads:
            scale = (self.max_norm / (norm + 1e-6)).clamp(max=1.0)
            torch._foreach_mul_(grads, scale.to(grads[0].device))

    def zero_grad(self):
        """Stands in for DeepSpeed's engine.zero_grad (which walks every parameter): clear the trained ones."""
        for p in self.params:
            p.grad = None
