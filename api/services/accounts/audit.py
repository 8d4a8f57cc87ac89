"""The audit log: `<data>/audit.jsonl`, one JSON object a line, only ever appended to:
{"time", "user", "address", "action", "object", "status"}. Each line is written with one write() on a file
opened for appending, so lines from concurrent requests never interleave."""

import json
import os
import threading
import time
from collections import deque


class AuditLog:
    def __init__(self, path, clock=time.time):
        self.path = path
        self.clock = clock
        self._lock = threading.Lock()

    def record(self, user, address, action, obj, status=None):
        line = {'time': self.clock(), 'user': user, 'address': address, 'action': action, 'object': obj,
                'status': status}
        data = (json.dumps(line, sort_keys=True, default=str) + '\n').encode('utf-8')
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        return line

    def tail(self, limit=200, user=None, action=None):
        """The newest `limit` lines (matching user / action when given), newest first."""
        keep = deque(maxlen=limit)
        try:
            with open(self.path, encoding='utf-8') as f:
                for raw in f:
                    try:
                        line = json.loads(raw)
                    except ValueError:
                        continue
                    if (user is None or line.get('user') == user) and (action is None or line.get('action') == action):
                        keep.append(line)
        except FileNotFoundError:
            pass
        return list(reversed(keep))
