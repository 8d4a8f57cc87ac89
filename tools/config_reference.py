"""Write docs/config.md, the key reference, from the schema in utils/config.py.

    python tools/config_reference.py            rewrite docs/config.md
    python tools/config_reference.py --check    exit 1 if docs/config.md is out of date
"""

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from utils.config import describe_keys  # noqa: E402

HEADER = """# Config reference

Generated from `utils/config.py` by `python tools/config_reference.py`; do not edit by hand.

Configs use diffusion-pipe's TOML dialect: a main file (top-level keys and the `[model]`,
`[adapter]`, `[optimizer]`, `[monitoring]` tables) and a dataset file (top-level keys and one or
more `[[directory]]` tables, each of which may override the shared dataset keys). Relative paths
resolve against the folder of the file they appear in. A key that is not listed here is refused
with the nearest known key; `[optimizer]` also takes any argument of the chosen optimizer's
constructor (for example `momentum` for `sgd`, `d_coef` for `Prodigy`).

Defaults are diffusion-pipe's, so its configs train as they train there. Where this trainer offers
something else it is opt-in: `enable_ar_bucket = true` for aspect-ratio buckets,
`lr_schedule_steps = 'max_steps'` for a decay that ends at the run's last step, `lr_min = 0` for a cosine
down to zero. `steps_per_print` and `shuffle_metadata` are accepted and have no effect (see their rows).
"""

TITLES = {
    '': 'Main config: top level',
    'model': 'Main config: `[model]`',
    'adapter': 'Main config: `[adapter]` (absent = full fine-tune)',
    'optimizer': 'Main config: `[optimizer]`',
    'monitoring': 'Main config: `[monitoring]`',
    'dataset': 'Dataset config: top level',
    'dataset.directory': 'Dataset config: `[[directory]]`',
}


def render():
    out = [HEADER]
    section = None
    for row in describe_keys():
        if row['section'] != section:
            section = row['section']
            out.append(f'\n## {TITLES[section]}\n\n| key | default | meaning |\n|---|---|---|')
        default = row['default']
        default = '*required*' if default == 'required' else ('*unset*' if default is None else f'`{default!r}`')
        doc = row['doc'].replace('|', '\\|')
        if row['choices']:
            doc += ' (' + ', '.join(f'`{c}`' for c in row['choices']) + ')'
        out.append(f'| `{row["key"]}` | {default} | {doc} |')
    return '\n'.join(out) + '\n'


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--check', action='store_true')
    args = parser.parse_args()
    target = ROOT / 'docs' / 'config.md'
    text = render()
    if args.check:
        if not target.exists() or target.read_text() != text:
            print('docs/config.md is out of date: run python tools/config_reference.py')
            return 1
        return 0
    target.write_text(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
