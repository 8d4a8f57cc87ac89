"""Shared fixtures. Tests never reach a model hub: HF_HUB_OFFLINE is set before anything imports
huggingface_hub, and every model a test uses is a tiny random-weight one written to disk."""

import os

os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')


# ---- studio (api/) fixtures ---------------------------------------------------------------------------
import pytest  # noqa: E402


@pytest.fixture
def data_root(tmp_path):
    """A fresh studio data root for each test."""
    root = tmp_path / 'data'
    (root / 'models').mkdir(parents=True)
    (root / 'datasets').mkdir()
    return root


@pytest.fixture
def tiny_model(data_root):
    from tests.fakes.studio import write_model
    return write_model(data_root / 'models' / 'tiny')


@pytest.fixture
def make_app(data_root):
    """make_app(gpus=FakeGpus(2), retry_limit=1, ...) -> a Flask app on the fresh data root, scheduler thread off.

    Every app made here uses the fake trainer; running jobs are killed when the test ends."""
    from api import create_app
    from tests.fakes.studio import TEST_SETTINGS, kill_jobs
    apps = []

    def make(gpus=None, **settings):
        cfg = {**TEST_SETTINGS, 'data_root': str(data_root), **settings}
        if gpus is not None:
            cfg.update(gpu_provider=gpus, gpu_backend='auto')
        app = create_app(cfg)
        apps.append(app)
        return app

    yield make
    kill_jobs(data_root)

