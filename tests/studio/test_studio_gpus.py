"""GPU inventory (NVML, nvidia-smi fallback, CPU slots), its cache, and master port allocation."""

import socket

from api.services.jobs.gpus import GpuInventory, NvidiaSmiProvider, ProviderUnavailable
from api.services.jobs.ports import PortAllocator
from tests.fakes.gpus import FakeGpus

SMI = """0, NVIDIA A100-SXM4-80GB, 81920, 1024, 12, 35
1, NVIDIA A100-SXM4-80GB, 81920, 40960, 97, 61
2, NVIDIA A100-SXM4-80GB, 81920, [N/A], [N/A], [N/A]
"""


def test_nvidia_smi_output_is_parsed_in_gib():
    devices = NvidiaSmiProvider(run=lambda: SMI).devices()
    assert [d.index for d in devices] == [0, 1, 2]
    assert devices[0].memory_total_gib == 80.0 and devices[0].memory_used_gib == 1.0
    assert devices[1].memory_used_gib == 40.0 and devices[1].utilization_pct == 97.0
    assert devices[2].memory_used_gib is None and devices[2].temperature_c is None


def test_nvidia_smi_with_no_gpu_is_unavailable():
    try:
        NvidiaSmiProvider(run=lambda: '').devices()
    except ProviderUnavailable as e:
        assert 'no GPU' in str(e)
    else:
        raise AssertionError('expected ProviderUnavailable')


def test_inventory_is_cached():
    clock = [0.0]
    gpus = FakeGpus(2)
    inv = GpuInventory(provider=gpus, ttl=2.0, clock=lambda: clock[0])
    assert inv.snapshot().devices[1].memory_used_gib == 0.0
    gpus.used[1] = 20.0
    clock[0] = 1.9
    assert inv.snapshot().devices[1].memory_used_gib == 0.0      # still the cached reading
    clock[0] = 2.1
    assert inv.snapshot().devices[1].memory_used_gib == 20.0


def test_no_gpu_is_a_clear_cpu_state():
    inv = GpuInventory(backend='cpu', cpu_slots=3)
    snap = inv.snapshot()
    assert snap.mode == 'cpu' and [d.name for d in snap.devices] == ['CPU slot 0', 'CPU slot 1', 'CPU slot 2']
    assert 'CPU' in snap.message


def test_auto_backend_on_this_machine_falls_back_with_reasons(monkeypatch):
    import api.services.jobs.gpus as g

    def unavailable(*a, **k):
        raise ProviderUnavailable('NVML: driver not loaded')
    monkeypatch.setattr(g, 'PROVIDERS', {'nvml': unavailable, 'nvidia-smi': unavailable})
    snap = GpuInventory(backend='auto', cpu_slots=1).snapshot()
    assert snap.mode == 'cpu' and 'no NVIDIA GPU found' in snap.message and 'driver not loaded' in snap.message


def test_gpu_panel_in_cpu_mode(make_app):
    panel = make_app(cpu_slots=2).test_client().get('/api/v1/gpus').get_json()
    assert panel['mode'] == 'cpu' and len(panel['devices']) == 2 and all(d['free'] for d in panel['devices'])
    assert panel['memory_threshold_gib'] is None


def test_ports_skip_busy_and_live_ones():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        s.listen()
        busy = s.getsockname()[1]
        alloc = PortAllocator(busy, busy + 5)
        first = alloc.allocate(in_use=set())
        assert first != busy
        second = alloc.allocate(in_use={first})
        assert second not in (busy, first)


def test_nvml_provider_reads_devices(monkeypatch):
    """NVML through a stand-in pynvml module (no GPU here): names, bytes -> GiB, load, temperature."""
    import sys
    import types

    class Mem:
        total, used = 80 * 1024 ** 3, 3 * 1024 ** 3

    fake = types.SimpleNamespace(
        NVMLError=RuntimeError, NVML_TEMPERATURE_GPU=0, nvmlInit=lambda: None, nvmlDeviceGetCount=lambda: 2,
        nvmlDeviceGetHandleByIndex=lambda i: i, nvmlDeviceGetName=lambda h: b'NVIDIA A100-SXM4-80GB',
        nvmlDeviceGetMemoryInfo=lambda h: Mem, nvmlDeviceGetTemperature=lambda h, kind: 40 + h,
        nvmlDeviceGetUtilizationRates=lambda h: types.SimpleNamespace(gpu=50 * h))
    monkeypatch.setitem(sys.modules, 'pynvml', fake)
    inv = GpuInventory(backend='nvml')
    snap = inv.snapshot()
    assert snap.mode == 'gpu' and snap.provider == 'nvml'
    d = snap.devices[1]
    assert (d.name, d.memory_total_gib, d.memory_used_gib, d.utilization_pct, d.temperature_c) == \
        ('NVIDIA A100-SXM4-80GB', 80.0, 3.0, 50.0, 41.0)


def test_launch_commands_follow_the_protocol():
    from api.services.training.launch import train_command as build
    from api.settings import load_settings
    s = load_settings({'trainer_script': '/repo/train.py', 'python': '/venv/bin/python'}, env={})
    cmd, env = build(s, {'kind': 'train'}, 'gpu', [2, 5], 29517, '/data/runs/t/j', resume_from='/data/runs/t/j/checkpoints/step9')
    assert cmd == ['/venv/bin/deepspeed', '--include=localhost:2,5', '--master_port', '29517', '/repo/train.py',
                   '--deepspeed', '--config', '/data/runs/t/j/config.toml', '--run_dir', '/data/runs/t/j',
                   '--resume_from_checkpoint', '/data/runs/t/j/checkpoints/step9']
    assert env['PYTHONUNBUFFERED'] == '1' and 'CUDA_VISIBLE_DEVICES' not in env
    cmd, env = build(s, {'kind': 'train'}, 'cpu', [0, 1], 29518, '/data/runs/t/j')
    assert cmd[1:5] == ['--num_gpus', '2', '--master_port', '29518'] and '--resume_from_checkpoint' not in cmd
    assert env['OMP_NUM_THREADS'] == '1' and env['DS_ACCELERATOR'] == 'cpu'
