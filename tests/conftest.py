"""Shared fixtures. Tests never reach a model hub: HF_HUB_OFFLINE is set before anything imports
huggingface_hub, and every model a test uses is a tiny random-weight one written to disk."""

import os

import pytest

os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')


@pytest.fixture(scope='session')
def tiny_models(tmp_path_factory):
    """Root folder holding every tiny Wan variant in every layout: <root>/<variant>/<official|diffusers|comfy>.
    Written once per test session (a few seconds); see models/wan/tiny.py for the file names."""
    from models.wan.tiny import write_all
    root = tmp_path_factory.mktemp('tiny_models')
    write_all(root)
    return root
