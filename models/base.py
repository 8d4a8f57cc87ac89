"""The contract between the trainer and a model family.

One adapter class per family (registered in models/__init__.py). The trainer calls its hooks in
this order and never touches family-specific code itself:

 1. ``__init__(config)``            cheap: read config files, detect the variant; no weights load
 2. ``media_spec``, ``cache_identity()``   what the dataset and the cache need to know
 3. ``load_encoders()``, ``encode_media()``, ``encode_text()``, ``unload_encoders()``   caching
 4. ``build_diffusion_model()``     the trained network(s), with the LoRA adapter injected
 5. ``to_layers()``                 the ordered layers DeepSpeed splits into pipeline stages
 6. ``collate()``, ``prepare_inputs()``, ``loss()``   one micro-batch: inputs, labels, loss
 7. ``trainable_state_dict()``, ``save_adapter()``, ``save_full()``   results users load elsewhere
"""

import torch

from utils.dataset import MediaSpec  # noqa: F401  (re-exported: adapters describe their media with it)


class ModelConfigError(ValueError):
    """The model files do not match the config (missing file, unknown variant): refused before training."""


DTYPES = {
    'float32': torch.float32,
    'bfloat16': torch.bfloat16,
    'float16': torch.float16,
    'float8': torch.float8_e4m3fn,
    'float8_e4m3fn': torch.float8_e4m3fn,
    'float8_e5m2': torch.float8_e5m2,
}


def dtype_of(name):
    return DTYPES[name] if isinstance(name, str) else name


class ModelAdapter:
    """Base class; see the module docstring for the order of calls."""

    name = 'base'
    # Class names of layers DeepSpeed may wrap in activation checkpointing.
    checkpointable_layers: list[str] = []

    def __init__(self, config):
        self.config = config
        self.model_config = config['model']

    # -- what the data side needs ---------------------------------------------------------------
    @property
    def media_spec(self) -> MediaSpec:
        raise NotImplementedError

    def cache_identity(self) -> dict:
        """Everything whose change must invalidate cached latents / text embeddings."""
        raise NotImplementedError

    # -- caching ---------------------------------------------------------------------------------
    def load_encoders(self, device):
        raise NotImplementedError

    def unload_encoders(self):
        raise NotImplementedError

    def encode_media(self, pixels, masks=None) -> dict:
        """pixels: float [B, 3, F, H, W] in [-1, 1] -> dict of tensors with leading batch dim."""
        raise NotImplementedError

    def encode_text(self, captions) -> list:
        """captions: list of str -> one dict of tensors per caption."""
        raise NotImplementedError

    # -- training --------------------------------------------------------------------------------
    def build_diffusion_model(self):
        raise NotImplementedError

    def to_layers(self) -> list:
        raise NotImplementedError

    # -- several experts (networks that each train on part of the samples) ----------------------
    def expert_shares(self, buckets=()) -> dict | None:
        """{expert name: expected fraction of the training samples}; None with one network."""
        return None

    def sample_experts(self, inputs):
        """Which expert each sample of prepare_inputs' inputs trains (int64 [B]); None with one network."""
        return None

    def expert_parameters(self) -> list | None:
        """The trained parameters of each expert, in expert_shares' order; None with one network."""
        return None

    def collate(self, items) -> dict:
        raise NotImplementedError

    def prepare_inputs(self, batch, generator, timestep_quantile=None):
        """-> (inputs tuple for the first pipeline stage, labels tuple for the last)."""
        raise NotImplementedError

    def loss(self, output, labels):
        raise NotImplementedError

    # -- results ---------------------------------------------------------------------------------
    def trainable_state_dict(self, layers) -> dict:
        raise NotImplementedError

    def save_adapter(self, save_dir, state_dict) -> dict:
        """Write the adapter into save_dir -> {expert: file written, relative to save_dir}."""
        raise NotImplementedError

    def save_full(self, save_dir, state_dict) -> dict:
        """Write the whole trained network into save_dir -> {expert: file or folder, relative to save_dir}."""
        raise NotImplementedError
