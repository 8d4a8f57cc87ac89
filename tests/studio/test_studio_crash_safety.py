"""A studio killed with SIGKILL at random moments while it takes writes loses nothing it acknowledged
and never leaves a record that does not parse."""

import http.client
import json
import random
import threading
import time

from tests.support.studio import StudioProcess, free_port

ROUNDS = 22


def check(s, acked, pending):
    """Every acknowledged value is there (or the one in flight when the studio died, which then counts)."""
    for tid, want in acked.items():
        status, task = s.call('GET', f'/tasks/{tid}')
        assert status == 200, (tid, task)
        got = {'name': task['name'], 'epochs': task['form']['epochs']}
        if got != want:
            assert pending.get(tid) == got, (tid, want, got, pending.get(tid))
            acked[tid] = got
    pending.clear()


def hammer(s, acked, pending, rng, stop):
    while not stop.is_set():
        try:
            if not acked or rng.random() < 0.3:
                status, task = s.call('POST', '/tasks', {'form': {'epochs': 1}}, timeout=5)
                if status == 201:
                    acked[task['id']] = {'name': task['name'], 'epochs': 1}
                continue
            tid = rng.choice(sorted(acked))
            want = dict(acked[tid])
            if rng.random() < 0.2:
                want['name'] = f'renamed {tid} {rng.randrange(10 ** 6)}'
                body = {'name': want['name']}
            else:
                want['epochs'] += 1
                body = {'form': {'epochs': want['epochs']}}
            pending[tid] = want
            status, _ = s.call('PATCH', f'/tasks/{tid}', body, timeout=5)
            if status == 200:
                acked[tid] = want
                pending.pop(tid, None)
        except (OSError, http.client.HTTPException):     # the studio is gone
            return


def test_acknowledged_writes_survive_sigkill(data_root):
    s = StudioProcess(data_root, free_port())
    rng = random.Random(20261123)
    acked, pending = {}, {}
    try:
        for _ in range(ROUNDS):
            s.start()
            check(s, acked, pending)
            stop = threading.Event()
            t = threading.Thread(target=hammer, args=(s, acked, pending, rng, stop))
            t.start()
            time.sleep(rng.uniform(0.05, 0.5))
            s.kill()
            stop.set()
            t.join()
        s.start()
        check(s, acked, pending)
        assert len(acked) >= 10
    finally:
        s.kill()
    records = list(data_root.rglob('*.json'))
    assert len(records) > len(acked)
    for path in records:
        json.loads(path.read_text())                    # every record parses
    assert not list(data_root.rglob('*.corrupt-*'))
    assert not list(data_root.rglob('.*.tmp'))          # leftovers of killed writes were cleaned up on start
