"""Crash-safe file writes and path containment.

Every file that someone else reads while we run (a LoRA, a report, a job record) is written to a
temporary name in the same folder, flushed to disk, and renamed over the target: a reader, or a
restart after a crash at any instant, sees the old file or the new one, never half of one.
"""

import json
import os
import tempfile
import time
from pathlib import Path


def fsync_dir(path):
    """Persist a rename inside `path` (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path, data: bytes, durable: bool = True):
    def write(tmp):
        with open(tmp, 'wb') as f:
            f.write(data)
    atomic_save(path, write, durable=durable)


def atomic_write_text(path, text: str, durable: bool = True):
    atomic_write_bytes(path, text.encode('utf-8'), durable=durable)


def atomic_write_json(path, obj, durable: bool = True):
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + '\n', durable=durable)


def atomic_save(path, save_fn, durable: bool = True):
    """Call save_fn(tmp_path) to write a file by a library's own writer, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    os.close(fd)
    try:
        save_fn(tmp)
        if durable:
            with open(tmp, 'rb+') as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if durable:
        fsync_dir(path.parent)


def is_within(path, root) -> bool:
    """True if `path`, with symlinks and `..` resolved, lies inside `root` (or is root itself)."""
    path = Path(path).resolve()
    root = Path(root).resolve()
    return path == root or root in path.parents


def safe_join(root, *parts) -> Path:
    """Join untrusted path parts under root; raise ValueError if the result escapes root."""
    root = Path(root).resolve()
    candidate = root.joinpath(*[str(p) for p in parts])
    if any(str(p).startswith(('/', '\\')) or '\x00' in str(p) for p in parts):
        raise ValueError(f'path {"/".join(map(str, parts))!r} is not relative to {root}')
    if not is_within(candidate, root):
        raise ValueError(f'path {"/".join(map(str, parts))!r} escapes {root}')
    return candidate.resolve()


def remove_stale_build_locks(folder, older_than_s, now=None):
    """Remove torch's FileBaton build locks (`<op>/lock`, `<python tag>/<op>/lock`) under `folder` (a
    TORCH_EXTENSIONS_DIR) older than `older_than_s` whose folder no process on this machine works in (a build
    runs ninja there): a process killed while it JIT-built an op leaves one, and every later process would
    wait on it forever, silently. Returns the paths removed."""
    now = time.time() if now is None else now
    root = Path(folder)
    old = []
    for lock in (list(root.glob('*/lock')) + list(root.glob('*/*/lock'))) if root.is_dir() else []:
        try:
            if now - lock.stat().st_mtime > older_than_s:
                old.append(lock)
        except OSError:
            continue
    busy = _working_folders() if old else set()
    removed = []
    for lock in old:
        if any(f == lock.parent or lock.parent in f.parents for f in busy):
            continue                    # a build (ninja, the compiler) is running there: the lock is live
        try:
            lock.unlink()
            removed.append(lock)
        except OSError:
            continue
    return removed


def _working_folders():
    """The working folders of this machine's processes (those we may look at)."""
    import psutil
    out = set()
    for proc in psutil.process_iter():
        try:
            out.add(Path(proc.cwd()))
        except (psutil.Error, OSError):
            continue
    return out
