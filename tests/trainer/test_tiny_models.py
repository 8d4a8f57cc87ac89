"""tools/make_demo_model.py: a real subprocess, idempotent, never leaves half a model."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from models.wan import tiny

ROOT = Path(__file__).resolve().parents[2]


def test_cli_writes_then_skips_a_complete_model(tmp_path):
    cmd = [sys.executable, str(ROOT / 'tools' / 'make_demo_model.py'), '--out', str(tmp_path),
           '--variant', 'wan2.1-t2v-1.3b', '--layout', 'official']
    env = {**os.environ, 'HF_HUB_OFFLINE': '1'}
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert first.returncode == 0, first.stderr
    folder = tmp_path / 'wan2.1-t2v-1.3b' / 'official'
    weights = folder / 'diffusion_pytorch_model.safetensors'
    stamp = weights.stat().st_mtime_ns
    assert (folder / 'Wan2.1_VAE.pth').exists() and (folder / 'google' / 'umt5-xxl' / 'spiece.model').exists()
    assert sorted(p.name for p in (tmp_path / 'wan2.1-t2v-1.3b').iterdir()) == ['official']

    second = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert second.returncode == 0, second.stderr
    assert weights.stat().st_mtime_ns == stamp                  # complete output is not rewritten
    assert str(folder) in second.stdout


def test_interrupted_write_leaves_nothing_behind(tmp_path, monkeypatch):
    def crash(mods, out):
        (out / 'config.json').write_text('{}')
        raise KeyboardInterrupt
    monkeypatch.setitem(tiny.WRITERS, 'comfy', crash)
    with pytest.raises(KeyboardInterrupt):
        tiny.write_tiny_model(tmp_path, 'wan2.1-t2v-1.3b', layouts=('comfy',))
    assert list((tmp_path / 'wan2.1-t2v-1.3b').iterdir()) == []


def test_incomplete_folder_is_rewritten(tmp_path):
    folder = tmp_path / 'wan2.2-ti2v-5b' / 'comfy'
    folder.mkdir(parents=True)
    (folder / 'leftover.txt').write_text('from an older run without a completion marker')
    paths = tiny.write_tiny_model(tmp_path, 'wan2.2-ti2v-5b', layouts=('comfy',))
    assert paths['comfy'] == folder
    assert not (folder / 'leftover.txt').exists()
    assert (folder / 'vae' / 'wan2.2_vae.safetensors').exists()
    assert (folder / 'diffusion_models' / 'wan2.2_ti2v_5B_fp16.safetensors').exists()
    assert tiny.is_complete(folder, 'wan2.2-ti2v-5b', 'comfy')


def test_unknown_variant_or_layout_is_refused(tmp_path):
    with pytest.raises(ValueError, match='unknown variant'):
        tiny.write_tiny_model(tmp_path, 'wan3-t2v')
    with pytest.raises(ValueError, match='unknown layout'):
        tiny.write_tiny_model(tmp_path, 'wan2.1-t2v-1.3b', layouts=('gguf',))
