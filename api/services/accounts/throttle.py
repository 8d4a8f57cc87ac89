"""Login throttling: failed attempts counted per (user name, address), each failure past the first few
doubling the wait before the next attempt is heard; a success clears the count. Kept in memory (a restart
forgets it, which lets nobody guess faster than the back-off allows between restarts)."""

import threading
import time

FREE_ATTEMPTS = 3           # failures allowed before any wait
FIRST_WAIT_S = 1.0          # the wait after the first failure past those; doubles with each further one
MAX_WAIT_S = 900.0
FORGET_S = 3600.0           # an entry untouched this long (and not waiting) is dropped


class LoginThrottle:
    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self._failures = {}         # (user, address) -> (count, last failure time)
        self._lock = threading.Lock()

    def wait(self, user, address):
        """Seconds before this pair may try again (0: now)."""
        with self._lock:
            count, last = self._failures.get((user, address), (0, 0.0))
        if count < FREE_ATTEMPTS:
            return 0.0
        delay = min(MAX_WAIT_S, FIRST_WAIT_S * 2 ** (count - FREE_ATTEMPTS))
        return max(0.0, last + delay - self.clock())

    def failed(self, user, address):
        now = self.clock()
        with self._lock:
            count, _ = self._failures.get((user, address), (0, 0.0))
            self._failures[(user, address)] = (count + 1, now)
            stale = [k for k, (_, t) in self._failures.items() if now - t > max(FORGET_S, MAX_WAIT_S)]
            for k in stale:
                del self._failures[k]

    def succeeded(self, user, address):
        with self._lock:
            self._failures.pop((user, address), None)
