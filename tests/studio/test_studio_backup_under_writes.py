"""Backups taken from a running studio while writers create and edit tasks through the API, a trainer-like
process appends events and a LoRA is replaced: each restores into an empty data root with every write
acknowledged before the backup started, every record parses, and every file matches the manifest."""

import hashlib
import http.client
import json
import random
import subprocess
import threading
import time
import tomllib
from pathlib import Path

from api.services.backups.restore import restore
from tests.support.studio import StudioProcess, free_port, wait_until
from utils.fsutil import atomic_write_bytes

REPO = Path(__file__).resolve().parents[2]
ROUNDS = 4
WRITERS = 3


def writer(s, n, history, stop):
    """Create tasks and edit them; history[tid] = [(acked_at, state), ...] in the order written
    (each task has one writer, so its writes are sequential)."""
    rng, mine = random.Random(n), []
    while not stop.is_set():
        try:
            if not mine or rng.random() < 0.3:
                status, task = s.call('POST', '/tasks', {'form': {'epochs': 1}})
                assert status == 201, task
                mine.append(task['id'])
                history[task['id']] = [(time.time(), (task['name'], 1))]
                continue
            tid = rng.choice(mine)
            name, epochs = history[tid][-1][1]
            want = (f'{name.split(" #")[0]} #{rng.randrange(10 ** 6)}', epochs) if rng.random() < 0.2 \
                else (name, epochs + 1)
            body = {'name': want[0]} if want[0] != name else {'form': {'epochs': want[1]}}
            status, task = s.call('PATCH', f'/tasks/{tid}', body)
            assert status == 200, task
            history[tid].append((time.time(), want))
        except (OSError, http.client.HTTPException):
            return


def appender(events, stop):
    """A trainer's events.jsonl: lines written in two halves, so a backup may find half a line."""
    i = 0
    with open(events, 'ab') as f:
        while not stop.is_set():
            line = json.dumps({'time': time.time(), 'type': 'heartbeat', 'n': i}).encode() + b'\n'
            f.write(line[:10])
            f.flush()
            time.sleep(0.002)
            f.write(line[10:])
            f.flush()
            i += 1


def lora_bytes(v):
    return v.to_bytes(4, 'big') + hashlib.sha256(str(v).encode()).digest() * 32768      # ~1 MiB


def saver(lora, stop):
    v = 0
    while not stop.is_set():
        v += 1
        atomic_write_bytes(lora, lora_bytes(v), durable=False)
        time.sleep(0.01)


def check_restored(into, report, history, started_at):
    assert not report['missing'] and not report['changed'] and not report['corrupt'], report
    for path in into.rglob('*.json'):
        json.loads(path.read_text())                                  # no torn record
    for path in into.rglob('*.jsonl'):
        raw = path.read_bytes()
        assert raw.endswith(b'\n') and [json.loads(x) for x in raw.splitlines()]
    acked = 0
    for tid, writes in list(history.items()):
        before = [i for i, (at, _) in enumerate(writes) if at < started_at]
        if not before:
            continue
        acked += 1
        task = json.loads((into / 'runs' / tid / 'task.json').read_text())
        got = (task['name'], tomllib.loads(task['toml']['main'])['epochs'])
        # the snapshot holds the last write acknowledged before it started, or one made after it
        assert got in [state for _, state in writes[before[-1]:]], (tid, got, writes)
    lora = (into / 'runs' / 'trainer' / 'j1' / 'epoch1' / 'adapter_model.safetensors').read_bytes()
    assert lora == lora_bytes(int.from_bytes(lora[:4], 'big'))        # one whole version
    return acked


def test_backups_under_writes_restore_every_acknowledged_record(data_root, tmp_path):
    run = data_root / 'runs' / 'trainer' / 'j1'
    (run / 'epoch1').mkdir(parents=True)
    s = StudioProcess(data_root, free_port()).start()
    history, stop = {}, threading.Event()
    threads = [threading.Thread(target=writer, args=(s, n, history, stop)) for n in range(WRITERS)]
    threads += [threading.Thread(target=appender, args=(run / 'events.jsonl', stop)),
                threading.Thread(target=saver, args=(run / 'epoch1' / 'adapter_model.safetensors', stop))]
    checked = []
    try:
        for t in threads:
            t.start()
        time.sleep(0.5)
        for n in range(ROUNDS):
            status, view = s.call('POST', '/backups')
            assert status == 202, view
            started_at = view['running']['started_at']
            view = wait_until(lambda: (v := s.call('GET', '/backups')[1])['running'] is None and v, timeout=60,
                              what='the backup to end')
            assert view['last']['ok'], view['last']
            snap = Path(view['dir']) / view['last']['name']
            into = tmp_path / f'restored{n}'
            if n < ROUNDS - 1:
                report = restore(snap, into)
            else:                                                       # the last one by the script users run
                r = subprocess.run([str(REPO / 'tools' / 'restore.sh'), str(snap), '--into', str(into), '--json'],
                                   capture_output=True, text=True, timeout=120)
                assert r.returncode == 0, r.stdout + r.stderr
                report = json.loads(r.stdout)
            checked.append(check_restored(into, report, history, started_at))
            time.sleep(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join()
        s.kill()
    print('acknowledged tasks checked per backup:', checked)
    assert checked[0] >= 1 and checked[-1] > checked[0], checked    # tasks kept coming while backups ran
    restored = StudioProcess(into, free_port()).start()                 # the last restore serves its tasks
    try:
        status, tasks = restored.call('GET', '/tasks')
        assert status == 200 and len(tasks['tasks']) >= checked[-1]
    finally:
        restored.kill()
    assert len(list((data_root / 'backups').iterdir())) == 1           # retention: same day, the newest only
