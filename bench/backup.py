"""Time and size of two backups of a studio data root (the first copies, the second of an unchanged root
hard-links): tasks made through the API, each with runs holding LoRAs, events and logs.

    .venv/bin/python bench/backup.py [--tasks 200] [--runs 5] [--lora_mib 1]
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault('HF_HUB_OFFLINE', '1')


def fill(studio, client, tasks, runs, lora_bytes):
    """Tasks through the API; per task `runs` run folders as the trainer leaves them (2 LoRAs, events, log)."""
    for _ in range(tasks):
        task = client.post('/api/v1/tasks', json={}, headers={'X-Requested-With': 'bench'}).get_json()['id']
        for r in range(runs):
            run = studio.paths.runs / task / f'j{r:03d}'
            for epoch in (1, 2):
                (run / f'epoch{epoch}').mkdir(parents=True)
                (run / f'epoch{epoch}' / 'adapter_model.safetensors').write_bytes(os.urandom(lora_bytes))
            (run / 'events.jsonl').write_text(''.join(json.dumps({'time': i, 'type': 'heartbeat'}) + '\n'
                                                      for i in range(2000)))
            (run / 'log.txt').write_text('step\n' * 500)
            (run / 'config.toml').write_text("epochs = 2\n")


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--tasks', type=int, default=200)
    p.add_argument('--runs', type=int, default=5)
    p.add_argument('--lora_mib', type=float, default=1.0)
    args = p.parse_args()
    from api import create_app
    from tests.support.studio import TEST_SETTINGS
    data = Path(tempfile.mkdtemp(prefix='odeo-bench-backup-')) / 'data'
    app = create_app({**TEST_SETTINGS, 'data_root': str(data), 'backup_interval_h': 0})
    studio = app.extensions['odeo']
    fill(studio, app.test_client(), args.tasks, args.runs, int(args.lora_mib * 2 ** 20))
    try:
        for label in ('first', 'unchanged'):
            t0 = time.perf_counter()
            rec = studio.backups.run()
            took = time.perf_counter() - t0
            assert rec['ok'], rec
            copied = {k: v for k, v in rec.items() if k in ('files', 'bytes', 'new_bytes', 'linked', 'listed')}
            print(f'{label} snapshot: {took:.2f} s {copied}', flush=True)
    finally:
        shutil.rmtree(data.parent, ignore_errors=True)


if __name__ == '__main__':
    main()
