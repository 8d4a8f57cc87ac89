"""docs/architecture.md's layout block names the tree as it is: every name in it exists, and every top-level
entry, every part of api/ and every folder of tests/ is named there (a new folder gets a line, a moved one
its new place)."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAME = re.compile(r'^[\w.\-]+/?$')


def layout_block():
    text = (ROOT / 'docs' / 'architecture.md').read_text()
    start = text.index('## Layout')
    opening = text.index('```\n', start) + 4
    return text[opening:text.index('```', opening)]


def named_paths():
    """Paths of the block: indentation (2 spaces a level) nests a line under the last folder above it; a line
    names one or more entries (separated by 2+ spaces) before its description."""
    parents, paths = [], set()
    for line in layout_block().splitlines():
        if not line.strip():
            continue
        depth = (len(line) - len(line.lstrip())) // 2
        del parents[depth:]
        names = []
        for field in re.split(r' {2,}', line.strip()):
            if not NAME.match(field):
                break
            names.append(field)
        assert names, f'a layout line names nothing: {line!r}'
        for name in names:
            paths.add('/'.join(parents + [name.rstrip('/')]))
        if names[-1].endswith('/'):
            parents.append(names[-1].rstrip('/'))
    return paths


def tracked():
    out = subprocess.run(['git', 'ls-files'], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return out.split()


def children(files, prefix):
    """Direct children (files and folders) of prefix among the tracked files."""
    found = set()
    for f in files:
        if f.startswith(prefix):
            found.add(prefix + f[len(prefix):].split('/')[0])
    return found


def test_every_name_in_the_layout_exists():
    missing = sorted(p for p in named_paths() if not (ROOT / p).exists())
    assert not missing, f'docs/architecture.md names what the tree lacks: {missing}'


def test_the_layout_names_the_top_level_api_and_the_test_areas():
    files, named = tracked(), named_paths()
    top = {c for c in children(files, '') if not c.startswith('.') or c == '.ci'}
    api = children(files, 'api/')
    test_areas = {c for c in children(files, 'tests/') if (ROOT / c).is_dir()}
    unnamed = sorted((top | api | test_areas) - named)
    assert not unnamed, f'docs/architecture.md does not name: {unnamed}'
