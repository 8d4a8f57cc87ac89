"""Block swapping (`blocks_to_swap = N`): the frozen weights of N transformer blocks live in pinned
CPU memory and are copied to the GPU just before their layer runs.

Frozen weights never change, so moving a block "out" costs nothing: its parameters point back at
the CPU copy, and the GPU copy is freed as soon as autograd no longer needs it. With activation
checkpointing (required, and switched on for the swapped layers) a block's GPU copy lives only
while its forward runs and, in backward, while its recompute and backward run, so peak GPU memory
holds about one swapped block at a time. Trainable (LoRA) weights stay on the GPU.
"""

import torch


class BlockSwapper:
    def __init__(self, layers, device):
        self.layers = list(layers)
        self.device = torch.device(device)
        self.enabled = True
        self._cpu = {}
        pin = self.device.type == 'cuda'
        for layer in self.layers:
            for p in self._frozen(layer):
                cpu = p.data.to('cpu')
                self._cpu[p] = cpu.pin_memory() if pin else cpu
                p.data = self._cpu[p]
            layer.register_forward_pre_hook(self._bring_in)
            layer.register_forward_hook(self._send_out)

    @staticmethod
    def _frozen(layer):
        return [p for p in layer.parameters() if not p.requires_grad]

    def _bring_in(self, layer, args):
        for p in self._frozen(layer):
            if p.data.device != self.device:
                p.data = self._cpu[p].to(self.device, non_blocking=True)

    def _send_out(self, layer, args, output):
        if not self.enabled:
            return
        for p in self._frozen(layer):
            p.data = self._cpu[p]

    def set_enabled(self, enabled):
        """Disabled: every swapped block stays on the GPU (disable_block_swap_for_eval)."""
        self.enabled = enabled
        for layer in self.layers:
            if enabled:
                self._send_out(layer, None, None)
            else:
                self._bring_in(layer, None)

