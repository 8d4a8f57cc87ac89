"""What was read from a file, kept until the file changes (its size or mtime): image sizes, LoRA headers."""

import threading

from utils.media import file_signature


class FileCache:
    def __init__(self):
        self._values = {}               # path -> ((size, mtime_ns), value)
        self._lock = threading.Lock()

    def get(self, path, read):
        """read(path) once per version of the file; errors it raises are not cached."""
        key = file_signature(path)
        with self._lock:
            hit = self._values.get(str(path))
        if hit and hit[0] == key:
            return hit[1]
        value = read(path)
        with self._lock:
            self._values[str(path)] = (key, value)
        return value
