"""Optimizer registry: config `[optimizer] type` -> a constructor.

Names are matched case-insensitively. Besides the entries below, any class in `torch.optim` can be
named (`RAdam`, `Adagrad`, ...). Extra `[optimizer]` keys are passed to the constructor, and
`optimizer_arguments` lets the config schema refuse a key the chosen optimizer does not take.
"""

import inspect


def _torch(name):
    def make():
        import torch.optim
        return getattr(torch.optim, name)
    return make


def _adamw8bit():
    import bitsandbytes.optim
    return bitsandbytes.optim.AdamW8bit


def _kahan(quantize_states, stabilize_default):
    def make():
        from functools import partial, update_wrapper
        from optimizers.kahan_adamw import KahanAdamW
        ctor = partial(KahanAdamW, quantize_states=quantize_states)
        if stabilize_default:
            ctor = partial(ctor, stabilize=True)
        update_wrapper(ctor, KahanAdamW)
        return ctor
    return make


def _prodigy():
    import prodigyopt
    return prodigyopt.Prodigy


REGISTRY = {
    'adamw': _torch('AdamW'),
    'adam': _torch('Adam'),
    'sgd': _torch('SGD'),
    'adamw8bit': _adamw8bit,
    # AdamW with Kahan-compensated updates, so bfloat16 weights still take small steps.
    'adamw_optimi': _kahan(quantize_states=False, stabilize_default=False),
    'adamw_kahan': _kahan(quantize_states=False, stabilize_default=False),
    'stableadamw': _kahan(quantize_states=False, stabilize_default=True),
    # The same with 8-bit block-quantized moments.
    'adamw8bitkahan': _kahan(quantize_states=True, stabilize_default=False),
    'prodigy': _prodigy,
}


def optimizer_class(name):
    key = name.lower()
    if key in REGISTRY:
        return REGISTRY[key]()
    import torch.optim
    for attr in dir(torch.optim):
        obj = getattr(torch.optim, attr)
        if attr.lower() == key and inspect.isclass(obj) and issubclass(obj, torch.optim.Optimizer):
            return obj
    known = sorted(set(REGISTRY) | {'Prodigy', 'AdamW8bitKahan'})
    raise KeyError(f'unknown optimizer {name!r}; known: {", ".join(known)}, or any torch.optim class')


def optimizer_arguments(name):
    """Names the optimizer's constructor accepts besides the parameters."""
    cls = optimizer_class(name)
    target = cls.func if hasattr(cls, 'func') else cls
    params = inspect.signature(target).parameters
    return {p for p in params if p not in ('params', 'self')}


def build_optimizer(cfg, parameters):
    """cfg is the resolved [optimizer] table; keys that are None (unset) keep the optimizer's default."""
    cls = optimizer_class(cfg['type'])
    kwargs = {k: v for k, v in cfg.items() if k != 'type' and v is not None}
    if 'betas' in kwargs:
        kwargs['betas'] = tuple(kwargs['betas'])
    return cls(parameters, **kwargs)
