"""Backups: what a snapshot copies and what it only lists, consistent copies of files being written,
hard links to the previous snapshot, tools/restore.sh and its report, the schedule and the REST API."""

import json
import os
import subprocess
import threading
from pathlib import Path

import pytest

from api.services.backups import snapshot
from api.services.backups.restore import sha256_of

REPO = Path(__file__).resolve().parents[2]
RESTORE = str(REPO / 'tools' / 'restore.sh')

COPIED = {
    'queue.json': b'{"queued": []}\n',
    'settings.toml': b'cpu_slots = 2\n',
    'runs/t1/task.json': b'{"id": "t1"}\n',
    'runs/t1/inference.json': b'{}\n',
    'runs/t1/j1/job.json': b'{"id": "j1"}\n',
    'runs/t1/j1/config.toml': b'[model]\n',
    'runs/t1/j1/log.txt': b'step 1\n',
    'runs/t1/j1/epoch2/adapter_model.safetensors': b'L' * 4096,
    'runs/t1/j1/epoch2/adapter_config.json': b'{}\n',
    'runs/t1/j1/results.json': b'{"cells": []}\n',
    'datasets/d/dataset.toml': b'[[directory]]\n',
    'datasets/d/clip.txt': b'a cat\n',
    'datasets/d/metadata.csv': b'video,prompt\n',
    'datasets/d/.studio/caption_origin.json': b'{"files": {}}\n',
}
LISTED = {
    'models/tiny/diffusion_pytorch_model.safetensors': 'model',
    'datasets/d/clip.mp4': 'media',
    'datasets/d/cache/wan2.1/shards/s0.safetensors': 'cache',
    'datasets/d/.studio/previews/clip.jpg': 'cache',
    'runs/t1/j1/checkpoints/global_step4/mp_rank_00_model_states.pt': 'checkpoint',
    'runs/t1/j1/results/c000.mp4': 'media',
    'gallery/faces/a.png': 'media',
    'uploads/u1/data.mp4': 'upload',
}
SKIPPED = ['trash/t0/task.json', 'runs/t1/.task.json.abc123.tmp', 'datasets/d/.studio/tmp/x.mp4',
           'backups/20260101T000000Z/manifest.json']


def populate(root):
    for rel, data in COPIED.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    for rel in [*LISTED, *SKIPPED]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b'x' * 100)
    (root / 'datasets' / 'd' / 'linked.mp4').symlink_to('/nonexistent/clip.mp4')


def take(root, dest, **kw):
    return snapshot.take(root, dest, exclude=(root / 'backups',), **kw)


def test_records_are_copied_media_models_and_caches_only_listed(tmp_path):
    root = tmp_path / 'data'
    populate(root)
    m = take(root, tmp_path / 'b' / 'S1')
    assert {e['path'] for e in m['files']} == set(COPIED)
    assert {e['path']: e['kind'] for e in m['listed']} == {**LISTED, 'datasets/d/linked.mp4': 'symlink'}
    assert next(e for e in m['listed'] if e['kind'] == 'symlink')['target'] == '/nonexistent/clip.mp4'
    on_disk = {p.relative_to(tmp_path / 'b' / 'S1').as_posix() for p in (tmp_path / 'b' / 'S1').rglob('*')
               if p.is_file()}
    assert on_disk == set(COPIED) | {'manifest.json'}
    for e in m['files']:
        assert e['size'] == len(COPIED[e['path']])
        assert sha256_of(tmp_path / 'b' / 'S1' / e['path']) == e['sha256']
    assert m['totals']['listed'] == len(LISTED) + 1 and m['totals']['files'] == len(COPIED)
    assert not (tmp_path / 'b' / 'S1.partial').exists()

    with_media = take(root, tmp_path / 'b' / 'S2', include_media=True)
    assert {e['path'] for e in with_media['files']} == set(COPIED) | set(LISTED)
    assert [e['kind'] for e in with_media['listed']] == ['symlink']


def test_events_copied_to_the_last_newline_and_unchanged_files_hard_linked(tmp_path):
    root = tmp_path / 'data'
    populate(root)
    events = root / 'runs' / 't1' / 'j1' / 'events.jsonl'
    events.write_bytes(b'{"type": "status"}\n{"type": "progress", "st')
    first = take(root, tmp_path / 'b' / 'S1')
    copied = tmp_path / 'b' / 'S1' / 'runs' / 't1' / 'j1' / 'events.jsonl'
    assert copied.read_bytes() == b'{"type": "status"}\n'
    assert next(e for e in first['files'] if e['path'].endswith('events.jsonl'))['size'] == 19

    (root / 'runs' / 't1' / 'task.json').write_bytes(b'{"id": "t1", "name": "new"}\n')
    second = take(root, tmp_path / 'b' / 'S2', previous=(tmp_path / 'b' / 'S1', first))
    lora = 'runs/t1/j1/epoch2/adapter_model.safetensors'
    assert (tmp_path / 'b' / 'S1' / lora).stat().st_ino == (tmp_path / 'b' / 'S2' / lora).stat().st_ino
    assert (tmp_path / 'b' / 'S2' / 'runs/t1/task.json').read_bytes() == b'{"id": "t1", "name": "new"}\n'
    assert second['totals']['linked'] == len(COPIED) - 1          # all but task.json (events: cut, so copied)
    assert second['totals']['new_bytes'] == len(b'{"id": "t1", "name": "new"}\n') + 19


def test_a_file_replaced_while_copied_is_one_whole_version(tmp_path):
    root = tmp_path / 'data'
    lora = root / 'runs' / 't1' / 'j1' / 'epoch1' / 'adapter_model.safetensors'
    versions = {i: bytes([i]) * (3 << 20) for i in range(1, 40)}
    from utils.fsutil import atomic_write_bytes
    atomic_write_bytes(lora, versions[1])
    stop = threading.Event()

    def rewrite():
        i = 1
        while not stop.is_set():
            i = i % 39 + 1
            atomic_write_bytes(lora, versions[i], durable=False)

    writer = threading.Thread(target=rewrite)
    writer.start()
    try:
        for n in range(5):
            take(root, tmp_path / 'b' / f'S{n}')
    finally:
        stop.set()
        writer.join()
    for n in range(5):
        got = (tmp_path / 'b' / f'S{n}' / 'runs/t1/j1/epoch1/adapter_model.safetensors').read_bytes()
        assert got in versions.values()


def restore(*args):
    return subprocess.run([RESTORE, *map(str, args)], capture_output=True, text=True, timeout=120)


def test_restore_verifies_and_reports_missing_changed_and_extra(tmp_path):
    root = tmp_path / 'data'
    populate(root)
    take(root, tmp_path / 'b' / '20260301T030000Z')
    into = tmp_path / 'restored'
    r = restore(tmp_path / 'b', '--into', into)                   # a backup folder: its newest snapshot
    assert r.returncode == 0, r.stdout + r.stderr
    assert f'{len(COPIED)} of {len(COPIED)} files match' in r.stdout
    assert not (tmp_path / 'restored.partial').exists()
    for rel, data in COPIED.items():
        assert (into / rel).read_bytes() == data
    assert not (into / 'models').exists()                         # listed, not copied

    (into / 'runs/t1/task.json').write_bytes(b'{"id": "t1", "edited": true}\n')
    (into / 'runs/t1/j1/epoch2/adapter_model.safetensors').unlink()
    (into / 'runs/t1/new.json').write_bytes(b'{}\n')
    r = restore(tmp_path / 'b', '--into', into, '--check', '--json')
    assert r.returncode == 1
    report = json.loads(r.stdout)
    assert report['changed'] == ['runs/t1/task.json']
    assert report['missing'] == ['runs/t1/j1/epoch2/adapter_model.safetensors']
    assert report['extra'] == ['runs/t1/new.json']

    r = restore(tmp_path / 'b', '--into', into)
    assert r.returncode == 2 and 'not empty' in r.stderr
    r = restore(tmp_path / 'b', '--into', into, '--force')
    assert r.returncode == 0, r.stdout
    assert 'extra: 1' in r.stdout and (into / 'runs/t1/task.json').read_bytes() == COPIED['runs/t1/task.json']


def test_restore_of_a_damaged_snapshot_names_the_file_and_fails(tmp_path):
    root = tmp_path / 'data'
    populate(root)
    snap = tmp_path / 'b' / '20260301T030000Z'
    take(root, snap)
    (snap / 'queue.json').write_bytes(b'{"queued": ["x"]}\n')
    (snap / 'runs/t1/j1/job.json').unlink()
    r = restore(snap, '--into', tmp_path / 'restored', '--json')
    assert r.returncode == 1
    report = json.loads(r.stdout)
    assert report['changed'] == ['queue.json'] and report['corrupt'] == ['queue.json']
    assert report['missing'] == ['runs/t1/j1/job.json']


# ---- the service: schedule, failures, REST ------------------------------------------------------

def test_rest_runs_a_backup_and_refuses_a_second_while_it_runs(make_app, monkeypatch):
    app = make_app()
    client = app.test_client()
    assert client.post('/api/v1/tasks', json={'form': {'epochs': 1}}).status_code == 201
    view = client.get('/api/v1/backups').get_json()
    assert view['last'] is None and view['snapshots'] == [] and view['inside_data_root'] is True

    gate, real = threading.Event(), snapshot.take
    monkeypatch.setattr(snapshot, 'take', lambda *a, **k: (gate.wait(10), real(*a, **k))[1])
    r = client.post('/api/v1/backups')
    assert r.status_code == 202 and r.get_json()['running']
    assert client.post('/api/v1/backups').status_code == 409
    gate.set()
    from tests.support.studio import wait_until
    view = wait_until(lambda: (v := client.get('/api/v1/backups').get_json())['running'] is None and v,
                      what='the backup to end')
    assert view['last']['ok'] and view['last']['files'] >= 2 and view['last']['bytes'] > 0
    assert [s['name'] for s in view['snapshots']] == [view['last']['name']]
    assert app.extensions['odeo'].backups.dir.joinpath(view['last']['name'], 'runs').is_dir()


def test_a_missing_backup_folder_is_a_reported_failure(make_app, tmp_path):
    app = make_app(backup_dir=str(tmp_path / 'share-not-mounted'), backup_interval_h=24)
    backups = app.extensions['odeo'].backups
    run = backups.run()
    assert not run['ok'] and 'does not exist' in run['error']
    assert not (tmp_path / 'share-not-mounted').exists()            # never created on the local disk
    view = app.test_client().get('/api/v1/backups').get_json()
    assert view['last']['error'] == run['error'] and view['last_ok'] is None
    assert view['next_at'] == pytest.approx(run['started_at'] + 3600)


def test_schedule_and_retention_of_the_service(make_app):
    now = [1_772_400_000.0]                                          # 2026-03-01 21:20 UTC
    app = make_app(backup_interval_h=24, backup_keep_daily=2, backup_keep_weekly=0)
    backups = app.extensions['odeo'].backups
    backups.clock = lambda: now[0]
    assert backups.due()                                             # never backed up
    names = []
    for step in (0, 3600, 0, 86400, 86400):                           # 3 on day 1, 2 in the same second
        now[0] += step
        names.append(backups.run()['name'])
        assert not backups.due()
    assert names[2] == names[1] + '-1'
    kept = [s['name'] for s in backups.snapshots()]
    assert kept == [names[4], names[3]]                               # daily 2: the newest of the last 2 days
    assert backups.status()['last']['deleted'] == [names[2]]
    now[0] += 86400 - 1
    assert not backups.due()
    now[0] += 1
    assert backups.due()
    assert not [p for p in backups.dir.iterdir() if p.name.endswith('.partial')]
    assert os.path.isfile(backups.dir / names[4] / 'manifest.json')
