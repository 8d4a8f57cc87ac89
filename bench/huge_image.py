"""What a still of huge dimensions costs the studio: a 12500x12500 1-bit PNG (a few KB on disk) asked for as
a thumbnail, in process: time of the answer and the growth of the process's peak resident memory.

    .venv/bin/python bench/huge_image.py [--side 12500] [--max_pixels N]   (N above side^2: what decoding it costs)
"""

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault('HF_HUB_OFFLINE', '1')


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--side', type=int, default=12500)
    p.add_argument('--max_pixels', type=int, default=None, help='the max_image_pixels setting (default: the studio\'s)')
    args = p.parse_args()
    from PIL import Image

    from api import create_app
    from tests.support.memory import peak_rss
    from tests.support.studio import TEST_SETTINGS
    data = Path(tempfile.mkdtemp(prefix='odeo-bench-image-')) / 'data'
    (data / 'datasets' / 'big').mkdir(parents=True)
    path = data / 'datasets' / 'big' / 'huge.png'
    Image.new('1', (args.side, args.side)).save(path, optimize=True)
    extra = {} if args.max_pixels is None else {'max_image_pixels': args.max_pixels}
    app = create_app({**TEST_SETTINGS, 'data_root': str(data), **extra})
    client = app.test_client()
    with peak_rss() as grown:
        t0 = time.perf_counter()
        r = client.get('/api/v1/datasets/big/thumbnail/huge.png')
        took = time.perf_counter() - t0
    body = r.get_json() if r.is_json else {'thumbnail bytes': len(r.data)}
    size = path.stat().st_size
    shutil.rmtree(data.parent, ignore_errors=True)
    print(f'{size} bytes on disk, {args.side}x{args.side}: HTTP {r.status_code} in {took:.2f} s, '
          f'peak RSS +{grown.mib:.0f} MiB; {body}')


if __name__ == '__main__':
    main()
