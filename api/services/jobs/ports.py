"""Ports: master ports for DeepSpeed jobs (each live job gets its own, checked free before it is handed
out), and any free loopback port (a managed ComfyUI server)."""

import socket
import threading


def free_port() -> int:
    """A TCP port on the loopback address that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def port_is_free(port) -> bool:
    for host in ('127.0.0.1', '0.0.0.0'):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


class PortAllocator:
    """Round-robin over a range, so a port a job just released is not handed out again at once."""

    def __init__(self, first=29500, last=29999):
        self.first, self.last = first, last
        self._next = first
        self._lock = threading.Lock()

    def allocate(self, in_use) -> int:
        with self._lock:
            span = self.last - self.first + 1
            for i in range(span):
                port = self.first + (self._next - self.first + i) % span
                if port not in in_use and port_is_free(port):
                    self._next = port + 1 if port < self.last else self.first
                    return port
        raise RuntimeError(f'no free port in {self.first}-{self.last}')
