"""AdamW with Kahan-compensated weight updates and, optionally, 8-bit moments.

For bfloat16 weights a plain update `w += -lr * u` is lost whenever it is smaller than the spacing
of bf16 numbers near w (8 bits of mantissa); long LoRA runs at lr ~1e-5 would stall. Kahan
summation keeps the rounding error of each update in a compensation buffer and adds it back next
step, so the weight follows the exact fp32 trajectory closely. For float32 weights no buffer is
kept and this is plain AdamW.

With `quantize_states=True` both moments are stored as 8-bit codes in blocks of 256 with one
float32 scale per block (bitsandbytes' block-wise dynamic quantization), cutting optimizer memory
from 8 to about 2 bytes per parameter. `stabilize=True` scales each tensor's step by
1 / max(1, RMS(g^2 / v_hat)) (update clipping as in StableAdamW).
"""

import torch

BLOCK = 256


class KahanAdamW(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01,
                 kahan_summation=True, stabilize=False, quantize_states=False):
        if lr <= 0:
            raise ValueError(f'lr must be positive, got {lr}')
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        kahan_summation=kahan_summation, stabilize=stabilize)
        super().__init__(params, defaults)
        self.quantize_states = quantize_states
        self._codes = {}

    # -- 8-bit storage -------------------------------------------------------------------------
    def _code(self, signed, device):
        key = (signed, device)
        if key not in self._codes:
            import bitsandbytes.functional as bnbf
            self._codes[key] = bnbf.create_dynamic_map(signed=signed).to(device)
        return self._codes[key]

    def _pack(self, x, signed):
        import bitsandbytes.functional as bnbf
        q, qs = bnbf.quantize_blockwise(x.contiguous().view(-1), code=self._code(signed, x.device), blocksize=BLOCK)
        return q, qs.absmax

    def _unpack(self, q, absmax, signed, like):
        import bitsandbytes.functional as bnbf
        x = bnbf.dequantize_blockwise(q, absmax=absmax, code=self._code(signed, q.device), blocksize=BLOCK)
        return x.view_as(like).float()

    def _moments(self, p, state):
        if not self.quantize_states:
            return state['exp_avg'], state['exp_avg_sq']
        m = self._unpack(state['exp_avg_q'], state['exp_avg_absmax'], True, p)
        v = self._unpack(state['exp_avg_sq_q'], state['exp_avg_sq_absmax'], False, p)
        return m, v

    def _store(self, state, m, v):
        if self.quantize_states:
            state['exp_avg_q'], state['exp_avg_absmax'] = self._pack(m, True)
            state['exp_avg_sq_q'], state['exp_avg_sq_absmax'] = self._pack(v, False)

    def _init_state(self, p, state, kahan):
        state['step'] = torch.zeros((), dtype=torch.float32)
        zeros = torch.zeros_like(p, dtype=torch.float32)
        if self.quantize_states:
            self._store(state, zeros, zeros)
        else:
            state['exp_avg'] = zeros
            state['exp_avg_sq'] = zeros.clone()
        if kahan and p.dtype in (torch.bfloat16, torch.float16):
            state['compensation'] = torch.zeros_like(p)

    def load_state_dict(self, state_dict):
        """torch casts every loaded state tensor to its parameter's dtype; ours keep their own (float32
        moments of bfloat16 weights, uint8 codes), so they are put back as saved, on the parameter's device."""
        saved = state_dict['state']
        super().load_state_dict(state_dict)
        ids = [i for group in state_dict['param_groups'] for i in group['params']]
        params = [p for group in self.param_groups for p in group['params']]
        for i, p in zip(ids, params):
            for key, value in saved.get(i, {}).items():
                if torch.is_tensor(value) and key != 'step':
                    self.state[p][key] = value.to(p.device, copy=True)

    # -- the update ----------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group['betas']
            for p in group['params']:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    self._init_state(p, state, group['kahan_summation'])
                state['step'] += 1
                step = state['step'].item()
                grad = p.grad.float()
                m, v = self._moments(p, state)
                m.mul_(beta1).add_(grad, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                self._store(state, m, v)

                lr = group['lr']
                bias1 = 1 - beta1 ** step
                bias2 = 1 - beta2 ** step
                if group['stabilize']:
                    rms = (grad.square() / (v / bias2).clamp_min(group['eps'] ** 2)).mean().sqrt().item()
                    lr = lr / max(1.0, rms)
                update = (m / bias1) / ((v / bias2).sqrt() + group['eps'])
                weight = p.float()
                delta = -lr * (update + group['weight_decay'] * weight)

                comp = state.get('compensation')
                if comp is None:
                    p.add_(delta.to(p.dtype))
                else:
                    # Kahan: add the rounding error carried from the last step, keep the new one.
                    corrected = delta + comp.float()
                    new = (weight + corrected).to(p.dtype)
                    comp.copy_((corrected - (new.float() - weight)).to(comp.dtype))
                    p.copy_(new)
        return loss
