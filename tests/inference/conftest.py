"""Inference tests: infer jobs on the embedded diffusers pipelines and on ComfyUI (its stand-in in
tests/fakes/comfyui.py), the Inference studio's routes, and previews per saved epoch.

Fixtures: `preview_studio` (tests/support/previews.py, one 2-epoch training run per session), `make_app`,
`tiny_model`, `one_torch_thread`; video helpers in tests/support/inference.py."""

import pytest


@pytest.fixture
def one_torch_thread():
    """Two cores shared with other tests: one torch thread each is much faster than contention."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
