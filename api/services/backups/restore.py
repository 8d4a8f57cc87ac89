"""Put a snapshot back and check it: python -m api.services.backups.restore BACKUP [--into DIR] [--force] [--check]
(tools/restore.sh runs this).

BACKUP is a snapshot folder (it holds manifest.json) or a backup folder (its newest snapshot is used).
DIR defaults to the studio's data root (ODEO_DATA, the settings file, else ./data). Stop the studio first.

- DIR absent or empty: the files are copied into DIR.partial, checked, and DIR.partial is renamed to DIR,
  so DIR never holds half a restore.
- DIR holds files: refused, unless --force, which writes each snapshot file over DIR's (each by temp
  file and rename) and leaves DIR's other files alone (they are reported as extra).
- --check writes nothing: DIR is compared with the snapshot.

Every file of the manifest is then read back from DIR and its sha256 compared: the report names what is
missing, changed (including a snapshot file that no longer has its recorded hash) and extra (in DIR, not
in the snapshot). Files the snapshot only listed (media, models, caches, checkpoints) are counted, with
those DIR lacks. Exit status: 0 nothing missing or changed, 1 something is, 2 refused.
"""

import argparse
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path, PurePosixPath

from utils.fsutil import atomic_save, fsync_dir

from .snapshot import CHUNK, MANIFEST, NAME_RE, read_manifest, walk


def find_snapshot(backup: Path) -> Path:
    backup = Path(backup).expanduser().resolve()
    if (backup / MANIFEST).is_file():
        return backup
    names = sorted((p.name for p in backup.iterdir() if p.is_dir() and NAME_RE.match(p.name)
                    and (p / MANIFEST).is_file()), reverse=True) if backup.is_dir() else []
    if not names:
        raise FileNotFoundError(f'{backup} is neither a snapshot (no {MANIFEST}) nor a folder of snapshots')
    return backup / names[0]


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def copy_checked(src, dst, entry):
    """Copy one snapshot file to dst (by temp file and rename); True if its bytes have the recorded hash."""
    digest = hashlib.sha256()

    def write(tmp):
        with open(src, 'rb') as f, open(tmp, 'wb') as out:
            while chunk := f.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
    atomic_save(dst, write, durable=False)
    os.utime(dst, (entry['mtime'], entry['mtime']))
    return digest.hexdigest() == entry['sha256']


def verify(manifest, target: Path):
    """Compare target with the manifest: {missing, changed, extra, listed_missing, ...} (paths)."""
    target = Path(target)
    report = {'files': len(manifest['files']), 'missing': [], 'changed': [], 'extra': [],
              'listed': len(manifest['listed']), 'listed_missing': []}
    known = set()
    for e in manifest['files']:
        known.add(e['path'])
        p = target / e['path']
        if not p.is_file():
            report['missing'].append(e['path'])
        elif p.stat().st_size != e['size'] or sha256_of(p) != e['sha256']:
            report['changed'].append(e['path'])
    for e in manifest['listed']:
        known.add(e['path'])
        if not os.path.lexists(target / e['path']):
            report['listed_missing'].append(e['path'])
    if target.is_dir():
        skip = {target / 'backups'}
        report['extra'] = [str(rel) for rel, kind, _ in walk(target, skip)
                           if str(rel) not in known and kind == 'copy']
    return report


def restore(snapshot_dir: Path, into: Path, force=False):
    """Copy the snapshot into `into` as the module docstring says; the verify() report, plus `corrupt`
    (snapshot files whose bytes no longer have their recorded hash). Raises FileExistsError when refused."""
    manifest = read_manifest(snapshot_dir)
    into = Path(into).expanduser().absolute()
    busy = into.is_dir() and any(into.iterdir())
    if into.exists() and not into.is_dir():
        raise FileExistsError(f'{into} is not a folder')
    if busy and not force:
        raise FileExistsError(f'{into} is not empty; restore into a new folder with --into, or pass --force '
                              'to write the snapshot over it')
    stage = into if busy else into.with_name(into.name + '.partial')
    if not busy:
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir(parents=True)
    corrupt = []
    for e in manifest['files']:
        rel = PurePosixPath(e['path'])
        if rel.is_absolute() or '..' in rel.parts:
            raise ValueError(f'manifest entry {e["path"]!r} is not a path inside the data root')
        try:
            if not copy_checked(snapshot_dir / rel, stage / rel, e):
                corrupt.append(e['path'])
        except FileNotFoundError:                       # gone from the snapshot: verify() reports it missing
            continue
    if not busy:
        for folder, _, _ in os.walk(stage, topdown=False):
            fsync_dir(folder)
        if into.is_dir():
            into.rmdir()
        os.rename(stage, into)
        fsync_dir(into.parent)
    report = verify(manifest, into)
    report['corrupt'] = corrupt
    return report


def print_report(report, snapshot_dir, into, out=sys.stdout, limit=50):
    print(f'snapshot {snapshot_dir}', file=out)
    print(f'into     {into}', file=out)
    bad = sorted(set(report['missing']) | set(report['changed']))
    print(f'{report["files"] - len(bad)} of {report["files"]} files match the manifest (sha256)', file=out)
    for label in ('missing', 'changed', 'corrupt', 'extra'):
        paths = report.get(label) or []
        if paths:
            print(f'{label}: {len(paths)}', file=out)
            for p in paths[:limit]:
                print(f'  {p}', file=out)
            if len(paths) > limit:
                print(f'  ... and {len(paths) - limit} more', file=out)
    if report['listed']:
        print(f'{report["listed"]} listed files (media, model weights, caches, checkpoints) are not in the '
              f'snapshot; {len(report["listed_missing"])} of them are absent here: copy them from where they '
              'came from', file=out)


def main(argv=None):
    p = argparse.ArgumentParser(prog='tools/restore.sh', description='Restore a studio backup and verify it.')
    p.add_argument('backup', help='a snapshot folder, or a backup folder (its newest snapshot)')
    p.add_argument('--into', help='the data root to restore into (default: the studio data root)')
    p.add_argument('--force', action='store_true', help='write over a folder that is not empty')
    p.add_argument('--check', action='store_true', help='only compare the folder with the snapshot')
    p.add_argument('--json', action='store_true', help='print the report as JSON')
    args = p.parse_args(argv)
    try:
        snap = find_snapshot(Path(args.backup))
        if args.into:
            into = Path(args.into)
        else:
            from api.settings import load_settings
            into = load_settings().data_path
        report = verify(read_manifest(snap), into) if args.check else restore(snap, into, args.force)
    except (OSError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report, snap, into)
    return 1 if report['missing'] or report['changed'] else 0


if __name__ == '__main__':
    sys.exit(main())
