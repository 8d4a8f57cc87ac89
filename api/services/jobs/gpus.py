"""GPU inventory: NVML first, `nvidia-smi` second, CPU slots when there is no GPU.

A provider is anything with `name` and `devices() -> list[Device]` that raises ProviderUnavailable
when it cannot see GPUs; tests inject one that reports the GPUs and memory use they want. The
inventory caches a reading for `ttl` seconds so 50 pollers cost one NVML query every 2 s.
"""

import shutil
import subprocess
import threading
import time
from dataclasses import asdict, dataclass

GIB = 1024 ** 3


class ProviderUnavailable(RuntimeError):
    pass


@dataclass(frozen=True)
class Device:
    index: int
    name: str
    memory_total_gib: float | None
    memory_used_gib: float | None
    utilization_pct: float | None = None
    temperature_c: float | None = None


class NvmlProvider:
    name = 'nvml'

    def __init__(self):
        try:
            import pynvml
            pynvml.nvmlInit()
        except Exception as e:  # library missing, no driver, no GPU
            raise ProviderUnavailable(f'NVML: {e}') from None
        self.nvml = pynvml

    def devices(self):
        nv = self.nvml
        out = []
        try:
            for i in range(nv.nvmlDeviceGetCount()):
                h = nv.nvmlDeviceGetHandleByIndex(i)
                mem = nv.nvmlDeviceGetMemoryInfo(h)
                name = nv.nvmlDeviceGetName(h)
                out.append(Device(i, name.decode() if isinstance(name, bytes) else name,
                                  round(mem.total / GIB, 2), round(mem.used / GIB, 2),
                                  _try(lambda: float(nv.nvmlDeviceGetUtilizationRates(h).gpu)),
                                  _try(lambda: float(nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU)))))
        except nv.NVMLError as e:
            raise ProviderUnavailable(f'NVML: {e}') from None
        return out


class NvidiaSmiProvider:
    name = 'nvidia-smi'
    QUERY = 'index,name,memory.total,memory.used,utilization.gpu,temperature.gpu'

    def __init__(self, run=None):
        self.run = run or self._run
        if run is None and not shutil.which('nvidia-smi'):
            raise ProviderUnavailable('nvidia-smi: not found')

    @classmethod
    def _run(cls, prefix=(), timeout=10):
        """nvidia-smi's CSV; `prefix` runs it elsewhere (e.g. ['ssh', host])."""
        cmd = [*prefix, 'nvidia-smi', f'--query-gpu={cls.QUERY}', '--format=csv,noheader,nounits']
        where = prefix[-1] if prefix else 'nvidia-smi'
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True).stdout
        except subprocess.CalledProcessError as e:      # its last words: no login, no nvidia-smi, no driver ...
            said = [line.strip() for line in (e.stderr or e.stdout or '').splitlines() if line.strip()]
            raise ProviderUnavailable(f'{where}: {said[-1] if said else e}') from None
        except (OSError, subprocess.SubprocessError) as e:
            raise ProviderUnavailable(f'{where}: {e}') from None

    def devices(self):
        out = []
        for line in self.run().splitlines():
            cols = [c.strip() for c in line.split(',')]
            if len(cols) < 4:
                continue
            out.append(Device(int(cols[0]), cols[1], _mib_to_gib(cols[2]), _mib_to_gib(cols[3]),
                              _num(cols[4]) if len(cols) > 4 else None, _num(cols[5]) if len(cols) > 5 else None))
        if not out:
            raise ProviderUnavailable('nvidia-smi: no GPU listed')
        return out


PROVIDERS = {'nvml': NvmlProvider, 'nvidia-smi': NvidiaSmiProvider}


def _try(fn):
    try:
        return fn()
    except Exception:
        return None


def _num(text):
    try:
        return float(text)
    except ValueError:      # '[N/A]'
        return None


def _mib_to_gib(text):
    v = _num(text)
    return None if v is None else round(v / 1024, 2)


@dataclass
class Snapshot:
    mode: str                   # 'gpu' or 'cpu'
    devices: list               # [Device]
    provider: str               # nvml | nvidia-smi | cpu | the injected provider's name
    message: str                # what a user should know (why there is no GPU, or a read error)
    read_at: float

    def as_dict(self):
        return {'mode': self.mode, 'provider': self.provider, 'message': self.message, 'read_at': self.read_at,
                'devices': [asdict(d) for d in self.devices]}


class GpuInventory:
    def __init__(self, backend='auto', provider=None, cpu_slots=2, ttl=2.0, clock=time.monotonic):
        self.backend = backend
        self.cpu_slots = cpu_slots
        self.ttl = ttl
        self.clock = clock
        self._provider = provider
        self._why_cpu = ''
        self._lock = threading.Lock()
        self._cached = None
        self._cached_at = 0.0
        if provider is None:
            self._provider, self._why_cpu = self._pick(backend)

    @staticmethod
    def _pick(backend):
        if backend == 'cpu':
            return None, 'GPU use is off (gpu_backend = cpu)'
        names = list(PROVIDERS) if backend == 'auto' else [backend]
        reasons = []
        for name in names:
            try:
                return PROVIDERS[name](), ''
            except ProviderUnavailable as e:
                reasons.append(str(e))
        return None, 'no NVIDIA GPU found (' + '; '.join(reasons) + ')'

    @property
    def mode(self):
        return 'cpu' if self._provider is None else 'gpu'

    def snapshot(self) -> Snapshot:
        with self._lock:
            now = self.clock()
            if self._cached is None or now - self._cached_at >= self.ttl:
                self._cached = self._read()
                self._cached_at = now
            return self._cached

    def _read(self):
        now = time.time()
        if self._provider is None:
            slots = [Device(i, f'CPU slot {i}', None, None) for i in range(self.cpu_slots)]
            msg = f'{self._why_cpu}; jobs run on the CPU, {self.cpu_slots} at a time'
            return Snapshot('cpu', slots, 'cpu', msg, now)
        try:
            return Snapshot('gpu', list(self._provider.devices()), self._provider.name, '', now)
        except ProviderUnavailable as e:
            return Snapshot('gpu', [], self._provider.name, f'cannot read GPUs: {e}', now)
