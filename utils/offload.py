"""Block swapping (`blocks_to_swap = N`): the frozen weights of N transformer blocks live in CPU memory
(pinned when the compute device is a GPU) and are copied into device buffers only while the block runs.

When a swapped block's frozen weights are on the compute device ("resident"):
  forward   brought in by the block's forward pre-hook (the next swapped block is prefetched on a
            side stream meanwhile), released by its forward hook. Swapped blocks are always
            activation-checkpointed, so autograd keeps no reference to the device copies.
  backward  the checkpoint's recompute runs the block's forward again inside backward: the pre-hook
            brings the block in again (and prefetches the block whose backward comes next), the
            forward hook leaves it resident (RMSNorm keeps the weight Parameter itself for its
            backward, and a non-reentrant recompute may stop before the forward hook runs at all),
            and it is released when the recompute of the block before it starts, or at the end of the
            backward pass. Both come after the last use of its weights: autograd saves frozen
            Parameters themselves (so a release must wait until no node reads them), the nodes of
            block i are created after those of block i - 1 and the engine runs the ready node created
            last first, so every node of block i that runs has run before a node of block i - 1 asks
            for its recompute; with reentrant or 'unsloth' checkpointing block i's whole backward even
            runs inside its own checkpoint node.

So at any moment at most two swapped blocks are resident (the one computing and the prefetched one).
The swapper keeps its own ledger of which blocks are resident (`resident`, and `ledger` when
`record` is on): tests read it on a CPU-only machine, where the "device" copies are distinct tensors
from the CPU masters.

Placement: a swapped block's frozen weights never move with the module. `module.to(device)` (as
DeepSpeed's engine does at initialisation) moves everything else of the stage, LoRA weights and
buffers of swapped blocks included, and leaves the masters in CPU memory.

Frozen weights never change, so a release is free: the parameters point back at the master copy and
the device copy is dropped.
"""

import functools

import torch


def in_backward():
    """True while the autograd engine runs a backward pass (checkpoint recomputes run there)."""
    return torch._C._current_graph_task_id() != -1


def tensor_bytes(tensors):
    return sum(t.numel() * t.element_size() for t in tensors)


def swap_share(blocks_to_swap, stage_blocks, stage):
    """How many of its blocks one pipeline stage swaps: blocks_to_swap shared among the stages in
    proportion to their block counts (largest remainders first), so the model swaps exactly that many."""
    total = sum(stage_blocks)
    exact = [blocks_to_swap * n / total for n in stage_blocks]
    share = [int(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda s: (share[s] - exact[s], s))
    for s in by_remainder[:blocks_to_swap - sum(share)]:
        share[s] += 1
    return min(share[stage], stage_blocks[stage])


class BlockSwapper:
    def __init__(self, layers, device, prefetch=True, record=False):
        self.layers = list(layers)
        self.device = torch.device(device)
        self.enabled = True
        self.prefetch = prefetch
        self.record = record
        self.ledger = []            # (event, layer index, resident indices after it) when recording
        self.resident = set()       # indices of the layers whose frozen weights are device copies now
        self.peak_resident = 0
        self.transferring = False   # True while the swapper itself reads the masters (copies)
        self._frozen = [[p for p in layer.parameters() if not p.requires_grad] for layer in self.layers]
        self._cpu = {}              # frozen parameter -> its CPU master copy
        self._ready = {}            # layer index -> CUDA event: its copy has finished
        cuda = self.device.type == 'cuda'
        self._stream = torch.cuda.Stream(self.device) if cuda else None
        for i, layer in enumerate(self.layers):
            for p in self._frozen[i]:
                master = p.data if p.device.type == 'cpu' else p.data.to('cpu')
                self._cpu[p] = master.pin_memory() if cuda else master
                p.data = self._cpu[p]
            layer.swapped = True
            layer.register_forward_pre_hook(functools.partial(self._before, i))
            layer.register_forward_hook(functools.partial(self._after, i))
            self._keep_masters_in_place(i)

    # -- placement ----------------------------------------------------------------------------------
    def _keep_masters_in_place(self, i):
        """module.to()/cuda()/... on a swapped layer (or any module holding it) moves its LoRA weights
        and buffers but not its frozen weights: those stay the CPU masters (or the current device copies)."""
        layer = self.layers[i]
        inner = layer._apply
        frozen = self._frozen[i]

        def _apply(fn, *args, **kwargs):
            held = [p.data for p in frozen]
            for p in frozen:
                p.data = torch.empty(0, dtype=p.dtype, device=p.device)
            try:
                inner(fn, *args, **kwargs)
            finally:
                for p, data in zip(frozen, held):
                    p.data = data
            return layer
        layer._apply = _apply

    def swapped_bytes(self):
        """Bytes of frozen weights the swapper keeps in CPU memory."""
        return tensor_bytes(self._cpu.values())

    def device_bytes(self, module):
        """Bytes of `module`'s parameters and buffers on the compute device, not counting swapped blocks'
        device copies (at initialisation there are none)."""
        masters = {id(p) for p in self._cpu}
        return tensor_bytes(t for t in list(module.parameters()) + list(module.buffers())
                            if t.device == self.device and id(t) not in masters)

    # -- residency ----------------------------------------------------------------------------------
    def _note(self, event, i):
        self.peak_resident = max(self.peak_resident, len(self.resident))
        if self.record:
            self.ledger.append((event, i, tuple(sorted(self.resident))))

    def _fetch(self, i):
        """Start copying layer i's frozen weights into device buffers (asynchronously on a GPU)."""
        if i in self.resident:
            return
        self.transferring = True
        try:
            if self._stream is None:
                for p in self._frozen[i]:
                    p.data = self._cpu[p].to(self.device, copy=True)
            else:
                compute = torch.cuda.current_stream(self.device)
                self._stream.wait_stream(compute)       # the buffers may reuse memory the compute stream freed
                buffers = [torch.empty_like(self._cpu[p], device=self.device) for p in self._frozen[i]]
                with torch.cuda.stream(self._stream):
                    for p, buf in zip(self._frozen[i], buffers):
                        buf.copy_(self._cpu[p], non_blocking=True)
                        buf.record_stream(self._stream)
                        p.data = buf
                event = torch.cuda.Event()
                event.record(self._stream)
                self._ready[i] = event
        finally:
            self.transferring = False
        self.resident.add(i)
        self._note('fetch', i)

    def _bring_in(self, i):
        self._fetch(i)
        event = self._ready.pop(i, None)
        if event is not None:
            torch.cuda.current_stream(self.device).wait_event(event)

    def _release(self, i, event):
        if i not in self.resident or not self.enabled:
            return
        for p in self._frozen[i]:
            p.data = self._cpu[p]
        self._ready.pop(i, None)
        self.resident.discard(i)
        self._note(event, i)

    # -- hooks ------------------------------------------------------------------------------------
    def _before(self, i, layer, args):
        if not self.enabled:
            return
        if in_backward():
            # A checkpoint recompute: every block after this one has finished its backward (see the
            # module docstring), so they go; then this block's backward, then the one of block i - 1.
            for j in sorted(self.resident - {i}):
                self._release(j, 'backward')
            self._bring_in(i)
            self._note('recompute', i)
            torch.autograd.Variable._execution_engine.queue_callback(self._release_all)
            if self.prefetch and i > 0:
                self._fetch(i - 1)
            return
        self._bring_in(i)
        self._note('forward', i)
        if self.prefetch and i + 1 < len(self.layers):
            self._fetch(i + 1)

    def _after(self, i, layer, args, output):
        if not in_backward():
            self._release(i, 'forward-end')

    def _release_all(self):
        for j in sorted(self.resident):
            self._release(j, 'backward-end')

    def set_enabled(self, enabled):
        """Disabled: every swapped block stays resident (disable_block_swap_for_eval)."""
        if not enabled:
            for i in range(len(self.layers)):
                self._bring_in(i)
            self.enabled = False
        else:
            self.enabled = True
            for i in range(len(self.layers)):
                self._release(i, 'enable')
