"""Shared fixtures. Tests never reach a model hub: HF_HUB_OFFLINE is set before anything imports
huggingface_hub, and every model a test uses is a tiny random-weight one written to disk."""

import os

import pytest

os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')

# Harnesses whose fixtures every area uses: the real studio process + Chromium (browser tests, and the studio and
# data tests that look at a page), and the session's 2-epoch training run with previews (inference and browser).
pytest_plugins = ['tests.support.browser', 'tests.support.previews']


@pytest.fixture(scope='session')
def tiny_models(tmp_path_factory):
    """Root folder holding every tiny Wan variant in every layout: <root>/<variant>/<official|diffusers|comfy>.
    Written once per test session (a few seconds); see models/wan/tiny.py for the file names."""
    from models.wan.tiny import write_all
    root = tmp_path_factory.mktemp('tiny_models')
    write_all(root)
    return root


# ---- studio (api/) fixtures ---------------------------------------------------------------------------

@pytest.fixture
def data_root(tmp_path):
    """A fresh studio data root for each test."""
    root = tmp_path / 'data'
    (root / 'models').mkdir(parents=True)
    (root / 'datasets').mkdir()
    return root


@pytest.fixture
def tiny_model(data_root, tiny_models):
    """The tiny Wan2.1 T2V 1.3B (official layout) in the data root's models/tiny."""
    from tests.support.studio import copy_tiny_model
    return copy_tiny_model(tiny_models, data_root / 'models' / 'tiny')


@pytest.fixture
def make_app(data_root):
    """make_app(gpus=FakeGpus(2), retry_limit=1, ...) -> a Flask app on the fresh data root, scheduler thread off.

    Every app made here uses the fake trainer; running jobs are killed when the test ends."""
    from api import create_app
    from tests.support.studio import TEST_SETTINGS, StudioClient, kill_jobs
    apps = []

    def make(gpus=None, **settings):
        cfg = {**TEST_SETTINGS, 'data_root': str(data_root), **settings}
        if gpus is not None:
            cfg.update(gpu_provider=gpus, gpu_backend='auto')
        app = create_app(cfg)
        app.test_client_class = StudioClient
        apps.append(app)
        return app

    yield make
    kill_jobs(data_root)
