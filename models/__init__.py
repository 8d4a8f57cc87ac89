"""Model registry: `[model] type` -> adapter class, imported lazily so that reading a config or
building a dataset report never imports diffusers or torch-heavy code."""

import importlib

REGISTRY = {
    'wan': 'models.wan.adapter:WanAdapter',
}


def get_adapter_class(model_type):
    try:
        target = REGISTRY[model_type]
    except KeyError:
        raise KeyError(f'unknown model type {model_type!r}; supported: {", ".join(sorted(REGISTRY))}') from None
    module_name, class_name = target.split(':')
    return getattr(importlib.import_module(module_name), class_name)
