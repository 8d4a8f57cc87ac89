"""Load on the studio's polling endpoints while jobs run.

Starts `python -m api` on a temporary data root with 4 CPU slots, runs 4 training jobs (--jobs; the
fake trainer from tests/fakes, or the real train.py with --real), makes extra draft tasks, then lets
50 concurrent clients poll like the UI does: each client, once a second, fetches the task list,
the progress, the next piece of the log and the new metric points of one job. Prints p50 / p99 /
max latency per endpoint as the clients see it and, next to it, the studio's own share from the
`Server-Timing: app;dur=<ms>, cpu;dur=<ms>` header of each response: app is the wall time inside the studio,
cpu the CPU time its request thread used (the rest of app is waiting: for the GIL or for a core).

    python bench/api_load.py [--clients 50] [--seconds 30] [--interval 1.0] [--tasks 20] [--jobs 4] [--real]
"""

import argparse
import http.client
import json
import multiprocessing as mp
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.services.jobs.procs import signal_job  # noqa: E402
from tests.support.studio import StudioProcess, free_port, train_form, wait_until, write_dataset  # noqa: E402


def get(conn, path):
    t0 = time.perf_counter()
    conn.request('GET', path)
    r = conn.getresponse()
    body = r.read()
    dt = time.perf_counter() - t0
    if r.status != 200:
        raise RuntimeError(f'{path}: {r.status} {body[:200]}')
    timing = dict(part.strip().split(';dur=') for part in r.getheader('Server-Timing').split(','))
    return (dt, (float(timing['app']) / 1000, float(timing['cpu']) / 1000)), json.loads(body)


def client(port, jobs, seconds, interval, seed, out):
    rng = random.Random(seed)
    job = rng.choice(jobs)
    conn = http.client.HTTPConnection('127.0.0.1', port, timeout=10)
    log_offset, after = 0, None
    samples = []
    end = time.monotonic() + seconds
    time.sleep(rng.uniform(0, interval))                 # clients do not poll in lock-step
    while time.monotonic() < end:
        cycle = time.monotonic()
        dt, _ = get(conn, '/api/v1/tasks')
        samples.append(('GET /tasks', dt))
        dt, _ = get(conn, f'/api/v1/jobs/{job}/progress')
        samples.append(('GET /jobs/{id}/progress', dt))
        dt, chunk = get(conn, f'/api/v1/jobs/{job}/log?offset={log_offset}')
        log_offset = chunk['next_offset']
        samples.append(('GET /jobs/{id}/log', dt))
        dt, metrics = get(conn, f'/api/v1/jobs/{job}/metrics' + (f'?after={after}' if after is not None else ''))
        after = metrics['last_step']
        samples.append(('GET /jobs/{id}/metrics', dt))
        time.sleep(max(0.0, interval - (time.monotonic() - cycle)))
    out.put(samples)


def process(port, jobs, seconds, interval, threads, seed, out):
    ts = [threading.Thread(target=client, args=(port, jobs, seconds, interval, seed * 1000 + i, out))
          for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--clients', type=int, default=50)
    p.add_argument('--seconds', type=float, default=30.0)
    p.add_argument('--interval', type=float, default=1.0, help='seconds between one client\'s polls')
    p.add_argument('--tasks', type=int, default=20, help='tasks in the list (--jobs of them training)')
    p.add_argument('--jobs', type=int, default=4, help='training jobs running while the clients poll')
    p.add_argument('--processes', type=int, default=5, help='client processes (threads split among them)')
    p.add_argument('--real', action='store_true', help='run train.py instead of the fake trainer')
    args = p.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix='odeo-bench-'))
    data = tmp / 'data'
    from models.wan.tiny import write_tiny_model
    model = write_tiny_model(data / 'models' / 'tiny', 'wan2.1-t2v-1.3b', ('official',))['official']
    settings = {'cpu_slots': max(4, args.jobs)}
    form = train_form(model, 'demo', epochs=10000)
    if args.real:
        subprocess.run([sys.executable, 'tools/make_demo_dataset.py', '--out', str(data / 'datasets' / 'demo')],
                       cwd=ROOT, check=True, capture_output=True)
        settings.update(launcher='deepspeed', trainer_script=str(ROOT / 'train.py'))
        form = {'epochs': 10000, 'optimizer': 'adamw', 'learning_rate': 1e-3, 'lora_rank': 4,
                'checkpoint_every_n_minutes': None, 'checkpoint_every_n_epochs': 50, 'save_every_n_epochs': 50}
    else:
        write_dataset(data / 'datasets' / 'demo', items=4, behave={'step_time': 0.25, 'heartbeat_interval': 10})
    studio = StudioProcess(data, free_port(), **settings).start()
    jobs = []
    try:
        for i in range(args.tasks):
            status, task = studio.call('POST', '/tasks', {'form': form})
            assert status == 201, task
            if i < args.jobs:
                status, job = studio.call('POST', f'/tasks/{task["id"]}/start', {})
                assert status == 202, job
                jobs.append(job['id'])
        wait_until(lambda: all((studio.call('GET', f'/jobs/{j}/progress')[1]['step'] or 0) > 0 for j in jobs), 300,
                   every=0.5, what=f'{args.jobs} jobs training')
        print(f'{len(jobs)} jobs training, {args.tasks} tasks; {args.clients} clients for {args.seconds:.0f}s '
              f'polling every {args.interval:g}s', flush=True)
        out = mp.Queue()
        per = [args.clients // args.processes + (i < args.clients % args.processes) for i in range(args.processes)]
        procs = [mp.Process(target=process, args=(studio.port, jobs, args.seconds, args.interval, n, i, out))
                 for i, n in enumerate(per) if n]
        for pr in procs:
            pr.start()
        samples = []
        for _ in range(args.clients):
            samples += out.get(timeout=args.seconds + 60)
        for pr in procs:
            pr.join()
        by, server, cpu = {}, {}, {}
        for name, (dt, (inside, used)) in samples:
            by.setdefault(name, []).append(dt * 1000)
            server.setdefault(name, []).append(inside * 1000)
            cpu.setdefault(name, []).append(used * 1000)
        print('latency seen by the clients [time inside the studio | CPU time it used] (Server-Timing), ms')
        print(f'{"endpoint":28} {"requests":>9} {"p50":>20} {"p99":>22} {"max":>22}')
        rows = list(by.items()) + [('all', [x for v in by.values() for x in v])]
        inner = dict(server, all=[x for v in server.values() for x in v])
        used = dict(cpu, all=[x for v in cpu.values() for x in v])

        def cell(values, q):
            pick = (lambda v: max(v)) if q is None else (lambda v: percentile(v, q))
            return f'{pick(values[0]):6.1f} [{pick(values[1]):5.1f} | {pick(values[2]):4.1f}]'
        for name, v in rows:
            trio = (v, inner[name], used[name])
            print(f'{name:28} {len(v):9d} {cell(trio, 0.5):>20} {cell(trio, 0.99):>22} {cell(trio, None):>22}')
        print(f'{len(rows[-1][1]) / args.seconds:.0f} requests/s')
    finally:
        for j in jobs:
            studio.call('POST', f'/jobs/{j}/stop', {'save': False})
        time.sleep(1.0)
        studio.terminate()
        for rec in data.glob('runs/*/*/job.json'):
            for att in json.loads(rec.read_text()).get('attempts', []):
                signal_job(att.get('pid'), att.get('create_time'), signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    main()
