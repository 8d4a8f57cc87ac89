"""The trainer's events.jsonl writer: whole JSON lines, and heartbeats that stop when the main loop stalls."""

import json
import threading
import time

from utils.events import EventWriter


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_events_are_whole_json_lines_even_from_several_threads(tmp_path):
    w = EventWriter(tmp_path)
    threads = [threading.Thread(target=lambda i=i: [w.metric('train/loss', n, n * 0.5, epoch=i) for n in range(200)])
               for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    w.close()
    events = read(tmp_path / 'events.jsonl')
    assert len(events) == 800 and all(e['type'] == 'metric' and 'time' in e for e in events)


def test_heartbeats_stop_while_the_main_loop_is_stalled_and_resume_after(tmp_path):
    w = EventWriter(tmp_path, heartbeat_interval=0.05, stall_timeout=0.3)
    w.start_heartbeat()
    time.sleep(0.2)
    beating = sum(e['type'] == 'heartbeat' for e in read(tmp_path / 'events.jsonl'))
    time.sleep(0.6)                         # no progress: after 0.3 s the beats stop
    count = sum(e['type'] == 'heartbeat' for e in read(tmp_path / 'events.jsonl'))
    time.sleep(0.3)
    assert sum(e['type'] == 'heartbeat' for e in read(tmp_path / 'events.jsonl')) == count
    w.status('training', 'moving again')
    time.sleep(0.2)
    w.close()
    assert beating >= 2
    assert sum(e['type'] == 'heartbeat' for e in read(tmp_path / 'events.jsonl')) > count


def test_a_disabled_writer_writes_nothing(tmp_path):
    w = EventWriter(tmp_path / 'run', enabled=False)
    w.status('training')
    w.close()
    assert not (tmp_path / 'run').exists()
