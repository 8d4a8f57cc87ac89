"""Write tiny random-weight Wan models in the official, Diffusers and ComfyUI layouts (no download), and
tiny TAEHVs in the published taew2_1 / taew2_2 layout (<out>/taehv/tiny-taew2_1.pth, tiny-taew2_2.pth).

    python tools/make_demo_model.py                               # all variants and layouts -> data/models/tiny
    python tools/make_demo_model.py --variant wan2.1-t2v-1.3b --layout official --out /tmp/tiny

Output: <out>/<variant>/<layout>. A layout that is already complete is skipped; each one is written to a
temporary folder and renamed into place, so an interrupted run never leaves half a model.
"""

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv=None):
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging
    from models.wan.tiny import LAYOUTS, write_tiny_model
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    from models.wan.variants import VARIANTS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', type=Path, default=ROOT / 'data' / 'models' / 'tiny', help='output folder')
    parser.add_argument('--variant', action='append', choices=list(VARIANTS), help='variant id (repeatable; default all)')
    parser.add_argument('--layout', action='append', choices=list(LAYOUTS), help='layout (repeatable; default all)')
    parser.add_argument('--seed', type=int, default=0, help='seed of the random weights')
    args = parser.parse_args(argv)

    start = time.time()
    for variant in args.variant or list(VARIANTS):
        paths = write_tiny_model(args.out, variant, tuple(args.layout or LAYOUTS), seed=args.seed)
        for layout, path in paths.items():
            print(f'{variant:18s} {layout:9s} {path}')
    from models.taehv.model import write_tiny_taehv
    for name, path in write_tiny_taehv(args.out, seed=args.seed).items():
        print(f'{name:18s} {"taehv":9s} {path}')
    print(f'done in {time.time() - start:.1f}s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
