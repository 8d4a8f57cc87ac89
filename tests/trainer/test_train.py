"""train.py end to end on the CPU: real deepspeed launches (gloo), the tiny models in their official
layout, the demo dataset, the real cache. What a user relies on: it learns, in pipeline and in data
parallel; every variant trains; the LoRA loads in diffusers and ComfyUI's naming; a stop and
resume continues exactly; bad setups are refused naming the file."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from tests.support.trainer import (ROOT, config_text, eval_losses, events, last_status, launch, log_of, metric, official,
                             trainer_env, wait_for, write_config)

pytestmark = pytest.mark.slow

EVAL = "[{name = 'demo', config = '%s'}]"


@pytest.fixture(scope='session')
def demo_dataset(tmp_path_factory):
    from tools.make_demo_dataset import make_demo_dataset
    return make_demo_dataset(tmp_path_factory.mktemp('demo') / 'demo')


def pipeline_config(tiny_models, demo_dataset, out, **extra):
    settings = dict(pipeline_stages=2, epochs=16, eval_datasets=EVAL % demo_dataset, eval_before_first_step='true',
                    eval_every_n_epochs=16, save_every_n_epochs=8,
                    optimizer="type = 'adamw'\nlr = 5e-3\nweight_decay = 0.0",
                    adapter="type = 'lora'\nrank = 8\ndtype = 'float32'")
    settings.update(extra)
    return config_text(official(tiny_models, 'wan2.1-t2v-1.3b'), demo_dataset, out, **settings)


@pytest.fixture(scope='module')
def pipeline_run(tiny_models, demo_dataset, tmp_path_factory):
    """2 processes, pipeline_stages = 2: the reference run other tests compare with."""
    root = tmp_path_factory.mktemp('pipeline')
    config = write_config(root, pipeline_config(tiny_models, demo_dataset, root / 'out'))
    run = root / 'run'
    proc = launch(config, run, procs=2)
    assert proc.returncode == 0, log_of(run)[-3000:]
    return config, run


def test_two_stage_pipeline_learns(pipeline_run):
    _, run = pipeline_run
    before, after = eval_losses(run)
    assert after < 0.8 * before, (before, after)          # fixed eval batches, fixed noise, 9 timestep quantiles
    assert last_status(run)['state'] == 'done'
    log = log_of(run)
    assert 'stage=0 layers=3' in log and 'stage=1 layers=3' in log       # 4 blocks + embed + output split 3 / 3
    report = json.loads((run / 'dataset_report.json').read_text())
    assert report['totals']['used'] == 12 and report['batching']['steps'] == 4
    progress = [e for e in events(run) if e['type'] == 'progress' and e['phase'] == 'train']
    assert progress[-1]['step'] == progress[-1]['total_steps'] == 64
    assert {e['path'] for e in events(run) if e['type'] == 'artifact' and e['kind'] == 'lora'} == {
        'epoch8/adapter_model.safetensors', 'epoch16/adapter_model.safetensors'}
    assert (run / 'tensorboard').is_dir() and any((run / 'tensorboard').iterdir())


def test_data_parallel_learns(tiny_models, demo_dataset, tmp_path):
    config = write_config(tmp_path, pipeline_config(tiny_models, demo_dataset, tmp_path / 'out', pipeline_stages=1,
                                                     gradient_accumulation_steps=1, epochs=6, eval_every_n_epochs=6,
                                                     save_every_n_epochs=6))
    proc = launch(config, tmp_path / 'run', procs=2)
    assert proc.returncode == 0, log_of(tmp_path / 'run')[-3000:]
    before, after = eval_losses(tmp_path / 'run')
    assert after < 0.85 * before, (before, after)
    assert 'data=1' in log_of(tmp_path / 'run')          # topology: 1 stage x 2 data-parallel ranks
    # DeepSpeed's CPU all-reduce segments (one per rank, ~66 MB each) are not left in /dev/shm
    assert not list(Path('/dev/shm').glob(f'deepspeed_allreduce_buffer_*_{proc.master_port}_*'))


@pytest.mark.parametrize('variant, files', [
    ('wan2.1-i2v-14b', ['adapter_model.safetensors']),
    ('wan2.2-t2v-a14b', ['adapter_model_high_noise.safetensors', 'adapter_model_low_noise.safetensors']),
    ('wan2.2-ti2v-5b', ['adapter_model.safetensors']),
])
def test_each_variant_trains_from_its_official_folder(tiny_models, demo_dataset, tmp_path, variant, files):
    config = write_config(tmp_path, config_text(official(tiny_models, variant), demo_dataset, tmp_path / 'out',
                                                epochs=1, max_steps=3))
    run = tmp_path / 'run'
    proc = launch(config, run, procs=1)
    assert proc.returncode == 0, log_of(run)[-3000:]
    assert len(metric(run, 'train/loss')) == 3
    saved = sorted(e['path'] for e in events(run) if e['type'] == 'artifact' and e['kind'] == 'lora')
    folder = saved[0].split('/')[0]                       # epoch1 or step3, whichever came first
    assert saved == [f'{folder}/{f}' for f in files]
    if variant == 'wan2.1-i2v-14b':
        # image-to-video trains on clips only: the demo's 4 images are dropped, with the reason
        report = json.loads((run / 'dataset_report.json').read_text())
        dropped = [f for f in report['files'] if f['status'] == 'dropped']
        assert len(dropped) == 4 and all('video' in f['reason'] for f in dropped)
        keys = load_file(run / folder / files[0])
        assert any('.cross_attn.k_img.lora_A.weight' in k for k in keys)      # image-context projections train too


def test_two_expert_run_routes_samples_by_timestep(tiny_models, demo_dataset, tmp_path):
    """Both experts in one run: a high-noise-only range trains the high-noise expert alone."""
    config = write_config(tmp_path, config_text(official(tiny_models, 'wan2.2-t2v-a14b'), demo_dataset, tmp_path / 'out',
                                                epochs=1, max_steps=2, model_extra='min_t = 0.875\nmax_t = 1.0'))
    proc = launch(config, tmp_path / 'run', procs=1)
    assert proc.returncode == 0, log_of(tmp_path / 'run')[-3000:]
    (saved,) = [e['path'] for e in events(tmp_path / 'run') if e['type'] == 'artifact' and e['kind'] == 'lora']
    assert saved.endswith('/adapter_model.safetensors')
    meta = safe_open(tmp_path / 'run' / saved, 'pt').metadata()
    assert meta['odeo.expert'] == 'high_noise'


def test_an_expert_without_samples_is_not_stepped_with_two_data_parallel_ranks(tiny_models, demo_dataset, tmp_path):
    """Both experts, 2 data-parallel ranks, AdamW with weight decay; shift = 0.1 puts every timestep below the
    boundary, so the high-noise expert never gets a sample. DeepSpeed's gradient all-reduce hands it zero
    gradients; it must still end exactly as initialised while the low-noise expert trains."""
    from models.wan.adapter import WanAdapter
    from utils.config import load_main_config
    config = write_config(tmp_path, config_text(official(tiny_models, 'wan2.2-t2v-a14b'), demo_dataset, tmp_path / 'out',
                                                epochs=1, max_steps=3, gradient_accumulation_steps=1,
                                                model_extra='shift = 0.1',
                                                optimizer="type = 'adamw'\nlr = 2e-3\nweight_decay = 0.1"))
    run = tmp_path / 'run'
    proc = launch(config, run, procs=2)
    assert proc.returncode == 0, log_of(run)[-3000:]
    assert re.search(r'high_noise +0\.0%', log_of(run))          # the expected share, reported at start
    adapter = WanAdapter(load_main_config(config))
    initial = adapter.build_diffusion_model(seed=adapter.config['seed'])
    trained = WanAdapter(load_main_config(config)).build_diffusion_model(seed=adapter.config['seed'])
    adapter.load_adapter_weights(trained, run / 'step3')
    for expert, (t0, t1) in enumerate(zip(initial, trained)):
        lora = [(n, p0, p1) for (n, p0), p1 in zip(t0.named_parameters(), t1.parameters()) if '.lora_' in n]
        same = all(torch.equal(p0, p1) for _, p0, p1 in lora)
        assert same == (expert == 0), adapter.experts[expert]


def test_saved_lora_loads_in_diffusers_and_matches_the_trained_network(pipeline_run, tiny_models):
    from diffusers import WanPipeline
    from diffusers.utils import logging as diffusers_logging

    from models.wan.adapter import WanAdapter
    from utils.config import load_main_config
    config, run = pipeline_run
    lora = run / 'epoch16' / 'adapter_model.safetensors'
    keys = list(load_file(lora))
    # ComfyUI's naming: diffusion_model.<official module>.lora_A/B.weight, every module present in the official file
    with safe_open(official(tiny_models, 'wan2.1-t2v-1.3b') / 'diffusion_pytorch_model.safetensors', 'pt') as f:
        official_modules = {k.rsplit('.', 1)[0] for k in f.keys()}
    assert keys and all(k.startswith('diffusion_model.') and k.endswith(('.lora_A.weight', '.lora_B.weight')) for k in keys)
    assert {k[len('diffusion_model.'):].rsplit('.lora_', 1)[0] for k in keys} <= official_modules
    assert len(keys) == 4 * 10 * 2                       # 4 blocks x 10 Linear layers x (A, B)

    pipe = WanPipeline.from_pretrained(tiny_models / 'wan2.1-t2v-1.3b' / 'diffusers', dtype=torch.float32)
    warnings = []
    handler = _ListHandler(warnings)
    diffusers_logging.get_logger('diffusers').addHandler(handler)
    try:
        pipe.load_lora_weights(str(lora.parent), weight_name=lora.name, adapter_name='trained')
    finally:
        diffusers_logging.get_logger('diffusers').removeHandler(handler)
    assert not [w for w in warnings if 'unexpected' in w.lower() or 'missing' in w.lower() or 'not' in w.lower()], warnings
    loaded = sum(1 for name, _ in pipe.transformer.named_parameters() if '.lora_' in name)
    assert loaded == len(keys)

    # The trained network, rebuilt from the run's own config with the saved LoRA as its starting point.
    cfg = load_main_config(run / 'config.toml')
    cfg['adapter']['init_from_existing'] = str(lora.parent)
    ours = WanAdapter(cfg).build_diffusion_model()[0].eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 16, 3, 8, 8, generator=g)
    text = torch.randn(1, 512, 32, generator=g)
    t = torch.tensor([700.0])
    with torch.no_grad():
        expected = ours(x, t, text, return_dict=False)[0]
        got = pipe.transformer(x, t, text, return_dict=False)[0]
        pipe.set_adapters(['trained'], [0.0])
        base = pipe.transformer(x, t, text, return_dict=False)[0]
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert (got - base).abs().max() > 1e-3              # the LoRA really changes the output


class _ListHandler:
    level = 0

    def __init__(self, sink):
        self.sink = sink

    def handle(self, record):
        self.sink.append(record.getMessage())


def test_stop_then_resume_equals_an_uninterrupted_run(pipeline_run, tmp_path):
    config, reference = pipeline_run
    run = tmp_path / 'run'
    proc = launch(config, run, procs=2, wait=False)
    try:
        assert wait_for(lambda: len(metric(run, 'train/loss')) >= 3, timeout=240), log_of(run)[-2000:]
        (run / 'control' / 'save').touch()                 # save now, keep training
        assert wait_for(lambda: any(e['type'] == 'artifact' and e['path'].startswith('step') for e in events(run)),
                        timeout=60)
        (run / 'control' / 'stop').touch()
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    status = last_status(run)
    assert status['state'] == 'stopped'
    stopped_at = max(metric(run, 'train/loss'))
    saved_now = [e for e in events(run) if e['type'] == 'artifact' and e['path'].startswith('step')]
    assert saved_now and (run / saved_now[0]['path']).is_file() and not (run / 'control' / 'save').exists()
    assert stopped_at < 64 and (run / 'checkpoints' / f'step{stopped_at}' / 'trainer_state.json').is_file()

    proc = launch(config, run, procs=2, extra=['--resume_from_checkpoint'])
    assert proc.returncode == 0, log_of(run)[-3000:]
    assert f'resumed from {run}/checkpoints/step{stopped_at}' in log_of(run)
    resumed = [e for e in events(run) if e['type'] == 'metric' and e['name'] == 'train/loss']
    after = {e['step']: e['value'] for e in resumed if e['step'] > stopped_at}
    uninterrupted = metric(reference, 'train/loss')
    assert sorted(after) == list(range(stopped_at + 1, 65))
    for step, value in after.items():
        assert value == pytest.approx(uninterrupted[step], rel=1e-5, abs=1e-6), step
    assert eval_losses(run)[-1] == pytest.approx(eval_losses(reference)[-1], rel=1e-5)


def test_missing_checkpoint_file_is_named(tiny_models, demo_dataset, tmp_path):
    broken = tmp_path / 'Wan2.1-T2V-1.3B'
    shutil.copytree(official(tiny_models, 'wan2.1-t2v-1.3b'), broken)
    (broken / 'Wan2.1_VAE.pth').unlink()
    config = write_config(tmp_path, config_text(broken, demo_dataset, tmp_path / 'out'))
    result = subprocess.run([sys.executable, 'train.py', '--config', str(config), '--run_dir', str(tmp_path / 'run')],
                            cwd=ROOT, env=trainer_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert str(broken / 'Wan2.1_VAE.pth') in result.stderr
    assert 'Traceback' not in result.stderr


def test_dump_dataset_prints_the_report_without_loading_weights(tiny_models, demo_dataset, tmp_path):
    config = write_config(tmp_path, config_text(official(tiny_models, 'wan2.1-t2v-1.3b'), demo_dataset, tmp_path / 'out'))
    result = subprocess.run([sys.executable, 'train.py', '--config', str(config), '--dump_dataset', '--run_dir',
                             str(tmp_path / 'run')], cwd=ROOT, env=trainer_env(), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert 'Dataset: 12 files' in result.stdout and 'Steps per epoch: 4' in result.stdout
    saved = json.loads((tmp_path / 'run' / 'dataset_report.json').read_text())
    assert saved['batching']['steps'] == 4


def test_float8_storage_keeps_frozen_weights_in_float8(tiny_models, demo_dataset, tmp_path):
    from models.wan.adapter import WanAdapter
    from utils.config import load_main_config
    config = write_config(tmp_path, config_text(official(tiny_models, 'wan2.1-t2v-1.3b'), demo_dataset, tmp_path / 'out',
                                                model_extra="transformer_dtype = 'float8'"))
    adapter = WanAdapter(load_main_config(config))
    (transformer,) = adapter.build_diffusion_model()
    q = transformer.blocks[0].attn1.to_q
    assert q.base_layer.weight.dtype == torch.float8_e4m3fn
    assert q.lora_A['default'].weight.dtype == torch.float32 and q.lora_A['default'].weight.requires_grad
    layers = adapter.to_layers()
    batch = adapter.collate([{'latents': torch.randn(16, 3, 8, 8), 'text_embeddings': torch.randn(5, 32)}])
    inputs, labels = adapter.prepare_inputs(batch, torch.Generator().manual_seed(0))
    x = inputs
    for layer in layers:
        x = layer(x)
    loss = adapter.loss(x, labels)
    loss.backward()
    assert torch.isfinite(loss) and q.lora_B['default'].weight.grad is not None
    assert q.base_layer.weight.dtype == torch.float8_e4m3fn          # still stored in float8 after running


def test_full_fine_tune_saves_official_names_loadable_as_transformer_path(tiny_models, demo_dataset, tmp_path):
    from models.wan import checkpoints, weights
    src = official(tiny_models, 'wan2.1-t2v-1.3b')
    config = write_config(tmp_path, config_text(src, demo_dataset, tmp_path / 'out', max_steps=2, adapter=None,
                                                optimizer="type = 'adamw'\nlr = 1e-3"))
    run = tmp_path / 'run'
    proc = launch(config, run, procs=1)
    assert proc.returncode == 0, log_of(run)[-3000:]
    (artifact,) = [e for e in events(run) if e['type'] == 'artifact' and e['kind'] == 'model']
    folder = run / artifact['path']
    saved = load_file(folder / 'diffusion_pytorch_model.safetensors')
    original = load_file(src / 'diffusion_pytorch_model.safetensors')
    assert set(saved) == set(original)                       # the official parameter names, every one
    assert not torch.equal(saved['blocks.0.self_attn.q.weight'], original['blocks.0.self_attn.q.weight'])
    ckpt = checkpoints.inspect_checkpoint({'ckpt_path': str(src), 'transformer_path': str(folder)})
    loaded = weights.load_transformer(ckpt, 'main', torch.float32).state_dict()
    assert torch.equal(loaded['blocks.0.attn1.to_q.weight'], saved['blocks.0.self_attn.q.weight'])


def test_stop_at_the_last_step_still_finishes_with_the_final_lora(tiny_models, demo_dataset, tmp_path):
    """A stop that lands on the last step (here: asked before the only step) lets the run finish as usual."""
    config = write_config(tmp_path, config_text(official(tiny_models, 'wan2.1-t2v-1.3b'), demo_dataset, tmp_path / 'out',
                                                epochs=1, max_steps=1))
    run = tmp_path / 'run'
    (run / 'control').mkdir(parents=True)
    (run / 'control' / 'stop').touch()
    proc = launch(config, run, procs=1)
    assert proc.returncode == 0, log_of(run)[-3000:]
    assert last_status(run)['state'] == 'done'
    (lora,) = [e['path'] for e in events(run) if e['type'] == 'artifact' and e['kind'] == 'lora']
    assert lora == 'step1/adapter_model.safetensors' and (run / lora).is_file()
    assert (run / 'checkpoints' / 'step1' / 'trainer_state.json').is_file()
    assert not (run / 'control' / 'stop').exists()


def test_uncached_captions_are_encoded_when_the_latent_cache_is_already_complete(tiny_models, demo_dataset, tmp_path):
    """cache_text_embeddings = false: a second run finds every latent cached and loads no encoder while
    caching; the captions are still encoded as batches load, as the first run encoded them."""
    from models.wan.adapter import WanAdapter
    from utils.config import load_dataset_config, load_main_config
    from utils.events import EventWriter
    from utils.run_context import RunContext
    from utils.train_data import TrainData
    config = load_main_config(write_config(tmp_path, config_text(
        official(tiny_models, 'wan2.1-t2v-1.3b'), demo_dataset, tmp_path / 'out', model_extra='cache_text_embeddings = false')))
    loaded = []
    for _ in range(2):
        ctx = RunContext(rank=0, world=1, dp_world=1, device=torch.device('cpu'), barrier=lambda: None,
                         events=EventWriter(tmp_path, enabled=False), run_dir=tmp_path)
        adapter = WanAdapter(config)
        data = TrainData.build(ctx, config, adapter, load_dataset_config(demo_dataset, 16), 'train')
        micro = data.global_batches(1)[0].for_rank(0)[0]
        loaded.append((data.load(micro), data.dataset.by_id[micro[0][0]].captions[micro[0][1]], adapter))
    (first, caption, adapter), (second, _, _) = loaded
    expected = adapter.encode_text([caption])[0]['text_embeddings']
    assert torch.equal(first[0]['text_embeddings'], expected) and torch.equal(second[0]['text_embeddings'], expected)
    assert second[0]['uncond_text'].shape[-1] == expected.shape[-1]


def test_resume_with_other_pipeline_stages_is_refused_naming_the_checkpoint(tiny_models, demo_dataset, tmp_path):
    """Each stage keeps its own optimizer state: a checkpoint of 2 stages cannot continue on 1."""
    config = write_config(tmp_path, config_text(official(tiny_models, 'wan2.1-t2v-1.3b'), demo_dataset, tmp_path / 'out'))
    ckpt = tmp_path / 'old' / 'checkpoints' / 'step4'
    ckpt.mkdir(parents=True)
    (ckpt / 'trainer_state.json').write_text(json.dumps({'step': 4, 'epoch': 2, 'stages': 2, 'dp_world': 1}))
    result = subprocess.run([sys.executable, 'train.py', '--config', str(config), '--run_dir', str(tmp_path / 'run'),
                             '--resume_from_checkpoint', str(ckpt)], cwd=ROOT, env=trainer_env(), capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert f'{ckpt} was written with pipeline_stages = 2' in result.stderr and 'Traceback' not in result.stderr


def test_a_build_lock_left_by_a_killed_launch_does_not_hang_the_next(tiny_models, demo_dataset, tmp_path):
    """A launch killed while DeepSpeed JIT-built its op leaves `<TORCH_EXTENSIONS_DIR>/<op>/lock`, and torch
    waits on it silently for ever. The trainer removes one older than ODEO_BUILD_LOCK_STALE_S, saying so, and
    leaves alone a recent one and an old one whose folder a process works in (a long build is running there)."""
    import os
    import time
    ops = ROOT / 'build' / 'torch_extensions'
    op = next(p.parent for p in ops.glob('**/build.ninja'))          # built by tools/setup.sh
    lock, other = op / 'lock', ops / 'another_op' / 'lock'
    other.parent.mkdir(exist_ok=True)
    try:
        lock.touch()
        other.touch()
        os.utime(lock, (time.time() - 3600, time.time() - 3600))     # an hour old: nobody's
        config = write_config(tmp_path, config_text(official(tiny_models, 'wan2.1-t2v-1.3b'), demo_dataset,
                                                    tmp_path / 'out'))
        busy = ops / 'building_op'                                     # an old lock where a build still runs
        busy.mkdir(exist_ok=True)
        (busy / 'lock').touch()
        os.utime(busy / 'lock', (time.time() - 3600, time.time() - 3600))
        builder = subprocess.Popen(['sleep', '120'], cwd=busy)
        proc = launch(config, tmp_path / 'run', extra=['--cache_only'], timeout=180)
        log = log_of(tmp_path / 'run')
        assert proc.returncode == 0, log[-3000:]
        assert f'removed a stale build lock {lock}' in log and not lock.exists()
        assert other.exists() and (busy / 'lock').exists()             # a fresh lock, and a live build's, stay
    finally:
        if 'builder' in locals():
            builder.kill()
        lock.unlink(missing_ok=True)
        for folder in (other.parent, ops / 'building_op'):
            shutil.rmtree(folder, ignore_errors=True)
