"""Fetch the pinned browser libraries the studio serves from api/static/vendor/.

The UI must work with no internet, so every script and stylesheet it loads is served by the studio.
Third-party libraries are not committed; they are fetched once at set-up from the npm registry
(or a mirror named by ODEO_NPM_REGISTRY), checked against the integrity hash pinned here, and
unpacked into the ignored folder api/static/vendor/.

    python tools/vendor_assets.py           fetch what is missing
    python tools/vendor_assets.py --check   exit 1 if anything is missing
"""

import argparse
import base64
import hashlib
import io
import os
import sys
import tarfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENDOR = ROOT / 'api' / 'static' / 'vendor'

# name, version, sha512 integrity of the registry tarball, {path in the tarball: file name in vendor/}
ASSETS = [
    (
        'uplot',
        '1.6.32',
        'sha512-KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw==',
        {'package/dist/uPlot.iife.min.js': 'uPlot.iife.min.js', 'package/dist/uPlot.min.css': 'uPlot.min.css',
         'package/LICENSE': 'uPlot.LICENSE'},
    ),
]


def missing():
    return [(name, version, integrity, files) for name, version, integrity, files in ASSETS
            if not all((VENDOR / out).is_file() for out in files.values())]


def fetch(name, version, integrity, files):
    registry = os.environ.get('ODEO_NPM_REGISTRY', 'https://registry.npmjs.org').rstrip('/')
    url = f'{registry}/{name}/-/{name}-{version}.tgz'
    with urllib.request.urlopen(url, timeout=60) as response:
        blob = response.read()
    algo, expected = integrity.split('-', 1)
    actual = base64.b64encode(hashlib.new(algo, blob).digest()).decode()
    if actual != expected:
        raise SystemExit(f'{url}: integrity mismatch (expected {integrity}, got {algo}-{actual})')
    VENDOR.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(blob), mode='r:gz') as tar:
        for member, out in files.items():
            data = tar.extractfile(member).read()
            tmp = VENDOR / (out + '.tmp')
            tmp.write_bytes(data)
            tmp.replace(VENDOR / out)
    print(f'vendored {name}@{version} -> {VENDOR.relative_to(ROOT)}')


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--check', action='store_true', help='only report whether anything is missing')
    args = parser.parse_args()
    todo = missing()
    if args.check:
        for name, version, _, _ in todo:
            print(f'missing: {name}@{version}')
        return 1 if todo else 0
    for asset in todo:
        fetch(*asset)
    return 0


if __name__ == '__main__':
    sys.exit(main())
