"""GPU inventory (NVML, nvidia-smi fallback, CPU slots), its cache, and master port allocation."""

import socket

from api.services.gpus import GpuInventory, NvidiaSmiProvider, ProviderUnavailable
from api.services.ports import PortAllocator
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
    import api.services.gpus as g

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
