"""Reading what a job writes: events.jsonl by byte offset (partial last lines, unknown types, rewinds on
resume), progress with a live ETA, metric series after a step, and the incremental log reader."""

import json

from api.services.jobs.event_tail import EventTail, progress_view
from api.services.jobs.logs import collapse_cr, read_log


def ev(**fields):
    return (json.dumps({'time': 100.0, **fields}) + '\n').encode()


def test_tail_reads_complete_lines_only_and_skips_the_unknown(tmp_path):
    path = tmp_path / 'events.jsonl'
    tail = EventTail(path)
    assert tail.refresh().status is None                      # no file yet
    whole = ev(type='status', state='training') + ev(type='mystery', x=1) + b'not json\n'
    half = ev(type='metric', name='train/loss', step=1, epoch=1, value=0.5)
    path.write_bytes(whole + half[:10])                      # the trainer is mid-write
    state = tail.refresh()
    assert state.status['state'] == 'training' and state.skipped == 1 and state.series == {}
    assert tail.offset == len(whole)
    with open(path, 'ab') as f:
        f.write(half[10:] + ev(type='progress', phase='train', step=1, total_steps=10, eta_s=90.0, new_field=1))
    state = tail.refresh()
    assert state.series['train/loss'].after(None)['values'] == [0.5]
    assert state.train['step'] == 1
    assert tail.refresh() is state and tail.offset == path.stat().st_size   # nothing new: nothing read


def test_series_rewind_after_resume_and_after_step(tmp_path):
    path = tmp_path / 'events.jsonl'
    lines = b''.join(ev(type='metric', name='train/loss', step=s, epoch=1, value=float(s)) for s in (1, 2, 3, 4, 5))
    lines += b''.join(ev(type='metric', name='train/loss', step=s, epoch=1, value=10.0 + s) for s in (4, 5, 6))
    path.write_bytes(lines)
    series = EventTail(path).refresh().series['train/loss']
    assert series.after(None)['steps'] == [1, 2, 3, 4, 5, 6]
    assert series.after(None)['values'] == [1.0, 2.0, 3.0, 14.0, 15.0, 16.0]
    assert series.after(4) == {'steps': [5, 6], 'values': [15.0, 16.0], 'epochs': [1, 1]}
    assert series.after(6)['steps'] == []


def test_replaced_file_is_read_from_the_start(tmp_path):
    path = tmp_path / 'events.jsonl'
    path.write_bytes(ev(type='status', state='training') * 5)
    tail = EventTail(path)
    tail.refresh()
    path.unlink()
    path.write_bytes(ev(type='status', state='done'))
    assert tail.refresh().status['state'] == 'done' and tail.state.count == 1


def test_a_job_that_ended_is_read_to_its_last_line_then_served_without_the_file(tmp_path):
    """Lines that reach a shared filesystem late, after the job ended, still show; a job that ended over
    SETTLE_S ago is read once more and then served from memory (no stat per poll); once it runs again
    (resumed: the same file grows) its new lines show."""
    import time

    from api.services.jobs.monitor import SETTLE_S, JobMonitor
    from api.services.paths import Paths
    run = tmp_path / 'runs' / 't' / 'j1'
    run.mkdir(parents=True)
    path = run / 'events.jsonl'
    step = lambda n: ev(type='progress', phase='train', step=n, total_steps=10)   # noqa: E731
    monitor = JobMonitor(Paths(tmp_path))
    job = {'id': 'j1', 'run_dir': 'runs/t/j1', 'state': 'running', 'finished_at': None}
    path.write_bytes(step(1))
    assert monitor.state(job).train['step'] == 1
    job.update(state='failed', finished_at=time.time())           # just ended: its last line arrives late
    with open(path, 'ab') as f:
        f.write(step(2))
    assert monitor.state(job).train['step'] == 2
    job['finished_at'] -= SETTLE_S + 1
    with open(path, 'ab') as f:
        f.write(step(3))
    assert monitor.state(job).train['step'] == 3                  # the one more read after settling
    path.rename(run / 'moved')                                    # from now on the file is not looked at
    assert monitor.state(job).train['step'] == 3
    (run / 'moved').rename(path)
    with open(path, 'ab') as f:
        f.write(step(4))
    job['state'] = 'running'                                      # resumed
    assert monitor.state(job).train['step'] == 4


def test_progress_eta_counts_down_from_the_event():
    from api.services.jobs.event_tail import EventState
    s = EventState()
    s.fold({'type': 'progress', 'phase': 'train', 'time': 1000.0, 'step': 25, 'total_steps': 100, 'epoch': 2,
            'total_epochs': 8, 'steps_per_s': 2.5, 'eta_s': 30.0})
    s.fold({'type': 'heartbeat', 'time': 1004.0})
    p = progress_view(s, now=1010.0)
    assert p['eta_s'] == 20.0 and p['fraction'] == 0.25 and p['steps_per_s'] == 2.5
    assert p['heartbeat_age_s'] == 6.0 and p['phase'] == 'train'
    assert progress_view(s, now=2000.0)['eta_s'] == 0.0



def test_progress_lists_each_ranks_newest_device_report_by_node_then_rank():
    """`resources` events (one per rank, gathered by rank 0 of a multi-node run): the newest of each rank, ordered
    by node and rank, with its age; a later report of a rank replaces its earlier one."""
    from api.services.jobs.event_tail import EventState
    s = EventState()
    for t, node, rank, util in ((100.0, 1, 2, 10.0), (100.0, 0, 0, 20.0), (100.0, 0, 1, 30.0), (160.0, 1, 2, 90.0)):
        s.fold({'type': 'resources', 'time': t, 'node': node, 'host': f'h{node}', 'rank': rank, 'local_rank': rank % 2,
                'stage': 0, 'dp_rank': rank, 'device': rank % 2, 'kind': 'gpu', 'util_pct': util,
                'mem_used_mib': 1000.0, 'mem_total_mib': 80000.0, 'mem_peak_mib': 900.0})
    s.fold({'type': 'resources', 'time': 170.0, 'node': 0})          # no rank: not a report of any device
    rows = progress_view(s, now=170.0)['resources']
    assert [(r['node'], r['rank']) for r in rows] == [(0, 0), (0, 1), (1, 2)]
    assert rows[2]['util_pct'] == 90.0 and rows[2]['age_s'] == 10.0 and rows[0]['age_s'] == 70.0
    assert rows[0]['host'] == 'h0' and rows[0]['kind'] == 'gpu' and rows[0]['mem_total_mib'] == 80000.0
    assert progress_view(EventState(), now=0.0)['resources'] == []

def finished_job_with_events(make_app, events):
    """A studio (client) with one task whose finished job 'j1' wrote `events` (bytes) to its events.jsonl."""
    app = make_app()
    studio, client = app.extensions['odeo'], app.test_client()
    task = client.post('/api/v1/tasks', json={}).get_json()['id']
    from api.services.jobs.store import new_job
    job = new_job('j1', task, f'runs/{task}/j1', {'gpus': 1, 'gpu_ids': None}, {'action': 'start'})
    job['attempts'] = [{'devices': [0]}]
    job['state'] = 'done'
    (studio.paths.runs / task / 'j1').mkdir()
    studio.jobs.save(job)
    (studio.paths.runs / task / 'j1' / 'events.jsonl').write_bytes(events)
    return client


def test_metrics_endpoint_after_and_names(make_app, tiny_model):
    client = finished_job_with_events(make_app, b''.join(ev(type='metric', name=n, step=s, epoch=1, value=s / 10)
                                                         for s in range(1, 6) for n in ('train/loss', 'eval/x/loss_q0.5')))
    out = client.get('/api/v1/jobs/j1/metrics?after=3&names=train/loss').get_json()
    assert out['names'] == ['eval/x/loss_q0.5', 'train/loss'] and list(out['series']) == ['train/loss']
    assert out['series']['train/loss']['steps'] == [4, 5] and out['last_step'] == 5
    assert client.get('/api/v1/jobs/j1/metrics?after=x').status_code == 400


def test_log_reader_offsets_partial_lines_and_carriage_returns(tmp_path):
    log = tmp_path / 'log.txt'
    assert read_log(log)['text'] == '' and read_log(log)['size'] == 0
    log.write_bytes(b'loading\n 10%\r 50%\r100%\ndone\n 3/9\r 4/9')
    first = read_log(log, 0)
    assert first['text'] == 'loading\n100%\ndone\n' and first['partial'] == ' 4/9'
    assert first['next_offset'] == log.stat().st_size - len(b' 3/9\r 4/9')
    with open(log, 'ab') as f:
        f.write(b'\r 9/9\nnext line\n')
    second = read_log(log, first['next_offset'])
    assert second['text'] == ' 9/9\nnext line\n' and second['partial'] == '' and second['eof']
    assert read_log(log, second['next_offset'])['text'] == ''


def test_log_reader_bounds_chunks_and_tails(tmp_path):
    log = tmp_path / 'log.txt'
    log.write_bytes(b''.join(f'line {i:04d}\n'.encode() for i in range(1000)))    # 10 bytes a line
    chunk = read_log(log, 0, max_bytes=105)
    assert chunk['text'].count('\n') == 10 and chunk['next_offset'] == 100 and not chunk['eof']
    tail = read_log(log, 0, max_bytes=1000, tail=35)
    assert tail['text'] == 'line 0997\nline 0998\nline 0999\n'
    huge = tmp_path / 'bar.txt'
    huge.write_bytes(b'x' * 50 + b'\r' + b'y' * 100)                             # one long progress line
    part = read_log(huge, 0, max_bytes=80)
    assert part['next_offset'] == 51 and part['text'] == ''
    assert read_log(log, 10 ** 9)['reset']
    assert collapse_cr('a\r\nb') == 'a\nb'


def test_progress_and_job_briefs_carry_the_latest_train_loss(make_app, tiny_model):
    from api.services.jobs.event_tail import EventState
    s = EventState()
    assert progress_view(s)['loss'] is None
    for step, value in ((1, 2.5), (2, 2.25), (3, float('nan'))):
        s.fold({'type': 'metric', 'name': 'train/loss', 'step': step, 'epoch': 1, 'value': value, 'time': 1.0})
    s.fold({'type': 'metric', 'name': 'eval/x/loss', 'step': 4, 'epoch': 1, 'value': 9.0, 'time': 1.0})
    assert progress_view(s)['loss'] == {'step': 2, 'value': 2.25}      # newest finite train loss
    client = finished_job_with_events(make_app, ev(type='metric', name='train/loss', step=7, epoch=1, value=0.5))
    brief = client.get('/api/v1/tasks').get_json()['tasks'][0]['latest_job']
    assert brief['progress']['loss'] == {'step': 7, 'value': 0.5}
    assert client.get('/api/v1/jobs/j1/progress').get_json()['loss'] == {'step': 7, 'value': 0.5}
