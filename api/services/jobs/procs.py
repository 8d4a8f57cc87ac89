"""Process identity and signals. A job's process is known by pid AND start time (psutil create_time),
so a pid the kernel has since given to another program is never mistaken for our job, nor signalled."""

import os
import signal

import psutil

# psutil derives start times from the same boot time and clock ticks (10 ms) each time: equal means equal.
SAME_START = 0.005


def create_time(pid):
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


def same_process(pid, started) -> bool:
    """True if `pid` is alive, not a zombie, and started when we recorded."""
    if not pid or started is None:
        return False
    try:
        p = psutil.Process(pid)
        return abs(p.create_time() - started) < SAME_START and p.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def group_members(pgid, started):
    """Processes still in the job's process group that started no earlier than its leader."""
    out = []
    for p in psutil.process_iter(['pid', 'create_time']):
        try:
            if os.getpgid(p.pid) == pgid and p.info["create_time"] >= started - SAME_START \
                    and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except (psutil.NoSuchProcess, ProcessLookupError, PermissionError):
            continue
    return out


def signal_job(pid, started, sig) -> bool:
    """Signal the job's process group (the launcher is its leader: start_new_session=True).

    While the leader lives and is ours, the whole group gets the signal. Once it is gone, the group's
    remaining members (ranks the launcher left behind) get it: the kernel hands out no pid that is
    still some group's id, so they are ours. A pid now held by another program is left alone, and
    so is its group. Returns True if anything was signalled.
    """
    if not pid:
        return False
    if same_process(pid, started):
        try:
            os.killpg(pid, sig)
            return True
        except (ProcessLookupError, PermissionError):
            return False
    now_started = create_time(pid)
    if now_started is not None and (started is None or abs(now_started - started) >= SAME_START):
        return False                # the pid was reused: not ours, nor is its group
    hit = False
    for p in group_members(pid, started or 0):
        try:
            p.send_signal(sig)
            hit = True
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return hit


def find_by_argument(text):
    """Session leaders whose command line contains `text` (a run directory): orphans of a crash at launch."""
    out = []
    for p in psutil.process_iter(['pid', 'cmdline', 'create_time']):
        try:
            if text in (p.info['cmdline'] or []) and os.getsid(p.pid) == p.pid:
                out.append(p)
        except (psutil.NoSuchProcess, ProcessLookupError, PermissionError):
            continue
    return out


SIGNALS = {'SIGTERM': signal.SIGTERM, 'SIGKILL': signal.SIGKILL}
