"""Validate a task's TOML pair as it would run, and the rules about paths that come with it.

Runs the trainer's own schema (utils.config.validate_main / validate_dataset) after the studio has
set output_dir and dataset, resolved every path against the data root and checked that it stays in
its root (paths.confine), at every depth: the eval dataset files and their [[directory]] entries, and
every file the trainer will open for a dataset (utils.dataset.files_read: folder contents, metadata
rows, masks). Every issue comes back mapped to its form field (form.issue). Eval dataset files are
frozen into the run directory as checked, so what runs is what was checked.
"""

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from utils.config import validate_dataset, validate_main
from utils.dataset import files_read

from ..errors import PathRefused
from ..paths import confine, within_any
from .form import DIRECTORY_PATH_KEYS, FILES, directory_paths, get_at, issue, parse, set_at

MAX_OUTSIDE_SHOWN = 3               # files outside the roots named in one issue


@dataclass
class Checked:
    main: dict | None           # main document with paths made absolute (what gets frozen)
    dataset: dict | None
    issues: list
    variant: dict | None        # the model's variant, when the checkpoint is known
    extra_files: dict = field(default_factory=dict)     # run-directory file name -> document (eval datasets)


# (file, key) of every path in the documents, and the roots it must stay inside
def _path_rules(data_root, datasets_root, model_roots):
    readable = [data_root, *model_roots]
    return [
        ('main', ('model', 'ckpt_path'), readable, 'a model root or the data root'),
        ('main', ('model', 'transformer_path'), readable, 'a model root or the data root'),
        ('main', ('model', 'llm_path'), readable, 'a model root or the data root'),
        ('main', ('adapter', 'init_from_existing'), readable, 'a model root or the data root'),
        *[('dataset', ('directory', '*', key), [datasets_root], 'the datasets folder') for key in DIRECTORY_PATH_KEYS],
        ('main', ('eval_datasets', '*', 'config'), [data_root], 'the data root'),
        ('main', ('eval_datasets', '*'), [data_root], 'the data root'),     # a bare path entry
    ]


def _expand(doc, key):
    """Concrete keys for a pattern with '*' list indices."""
    if '*' not in key:
        return [key]
    i = key.index('*')
    items = get_at(doc, key[:i])
    n = len(items) if isinstance(items, list) else 0
    return [k for j in range(n) for k in _expand(doc, key[:i] + (j,) + key[i + 1:])]


def _dotted(key):
    out = ''
    for part in key:
        out += f'[{part}]' if isinstance(part, int) else ('.' if out else '') + part
    return out


def check(main_text, dataset_text, *, data_root, datasets_root, model_roots, catalog, world_size,
          output_dir, dataset_file):
    """Validate a task's TOML pair as it would run: output_dir and dataset set by the studio, every path
    resolved against the data root and kept inside its root, then the trainer's schema."""
    main, err_m = parse(main_text, 'main')
    dataset, err_d = parse(dataset_text, 'dataset')
    issues = [e for e in (err_m, err_d) if e]
    if issues:
        return Checked(None, None, issues, None)
    for key in ('output_dir', 'dataset'):        # the studio owns these; refuse one that leaves the data root
        v = main.get(key)
        if isinstance(v, str):
            try:
                confine(v, data_root, [data_root], f'the data root {data_root}')
            except PathRefused as e:
                issues.append(issue('main', key, v, f'{e.message}; leave it out, the studio sets it'))
    main['output_dir'], main['dataset'] = str(output_dir), str(dataset_file)
    for which, key, roots, where in _path_rules(data_root, datasets_root, model_roots):
        doc = main if which == 'main' else dataset
        for k in _expand(doc, key):
            v = get_at(doc, k)
            if not isinstance(v, str) or not v:
                continue
            try:
                set_at(doc, k, str(confine(v, data_root, roots, where)))
            except PathRefused as e:
                issues.append(issue(which, _dotted(k), v, e.message))
    variant = None
    ckpt = get_at(main, ('model', 'ckpt_path'))
    if ckpt == '':
        issues.append(issue('main', 'model.ckpt_path', ckpt, 'choose a model checkpoint (see GET /api/v1/models)'))
    elif isinstance(ckpt, str):
        entry = catalog.find(ckpt)
        if entry is None:
            issues.append(issue('main', 'model.ckpt_path', ckpt, 'not a checkpoint folder the studio knows '
                                '(official Wan folder or Diffusers folder in a model root; see GET /api/v1/models)'))
        elif entry['error']:
            issues.append(issue('main', 'model.ckpt_path', ckpt, entry['error']))
        else:
            variant = entry['variant']
    for k in _expand(dataset, ('directory', '*', 'path')):
        v = get_at(dataset, k)
        if v == '':
            issues.append(issue('dataset', _dotted(k), v, 'choose a dataset (a folder under <data>/datasets)'))
        elif isinstance(v, str) and within_any(v, [datasets_root]) and not Path(v).is_dir():
            issues.append(issue('dataset', _dotted(k), v, 'no such dataset folder'))
    _, main_issues = validate_main(main, FILES['main'], str(data_root), world_size)
    size_multiple = (variant or {}).get('size_multiple', 16)
    ds_cfg, ds_issues = validate_dataset(dataset, FILES['dataset'], str(data_root), size_multiple)
    _check_reads(ds_cfg, datasets_root, issues, 'dataset', lambda i: f'directory[{i}].path')
    extra = _eval_datasets(main, Path(dataset_file).parent, data_root, datasets_root, size_multiple, issues)
    seen = {(i['file'], i['key']) for i in issues}
    for which, found in (('main', main_issues), ('dataset', ds_issues)):
        for i in found:
            d = i.to_dict()
            found_issue = issue(which, d['field'], d['value'], d['message'])
            key = (found_issue['file'], found_issue['field'] or found_issue['key'], found_issue['message'])
            if (FILES[which], d['field']) not in seen and key not in seen:
                issues.append(found_issue)
                seen.add(key)
    return Checked(main, dataset, issues, variant, extra)


def _check_reads(cfg, datasets_root, issues, which, key_of, value=None):
    """Every file the trainer will open for a dataset (its listing, metadata rows, masks) must lie in the
    datasets folder; checked only for the [[directory]] entries whose own paths already do."""
    dirs = cfg.get('directory') if isinstance(cfg.get('directory'), list) else []
    inside = [d if all(not isinstance(d.get(k), str) or within_any(d[k], [datasets_root]) for k in DIRECTORY_PATH_KEYS)
              else {**d, 'path': None} for d in dirs if isinstance(d, dict)]
    outside = {}
    for i, path, named_by in files_read({'directory': inside}):
        try:
            confine(path, datasets_root, [datasets_root], 'the datasets folder')
        except PathRefused as e:
            outside.setdefault(i, []).append(f'{named_by}: {e.message}')
    for i, found in outside.items():
        more = f' (and {len(found) - MAX_OUTSIDE_SHOWN} more)' if len(found) > MAX_OUTSIDE_SHOWN else ''
        key = key_of(i)
        issues.append(issue(which, key, value if value is not None else get_at(cfg, ('directory', i, 'path')),
                            f'the trainer would read files outside the datasets folder: '
                            f'{"; ".join(found[:MAX_OUTSIDE_SHOWN])}{more}'))


def _eval_datasets(main, run_dir, data_root, datasets_root, size_multiple, issues):
    """Check each eval dataset file as the trainer will read it (paths relative to that file) and every file
    it makes the trainer open; a checked one is frozen into the run directory and the config points there.
    Returns {file name in the run directory: document}."""
    frozen = {}
    for k in _expand(main, ('eval_datasets', '*', 'config')):
        path, key = get_at(main, k), _dotted(k)
        if not isinstance(path, str) or not within_any(path, [data_root]):
            continue                            # refused above
        before = len(issues)
        try:
            doc = tomllib.loads(Path(path).read_text(encoding='utf-8'))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            issues.append(issue('main', key, path, f'cannot read this dataset file: {e}'))
            continue
        name = Path(path).name
        for entry, dkey, value in list(directory_paths(doc)):
            try:
                entry[dkey] = str(confine(value, Path(path).parent, [datasets_root], 'the datasets folder'))
            except PathRefused as e:
                issues.append(issue('main', key, path, f'{name}: directory.{dkey}: {e.message}'))
        if len(issues) > before:
            continue
        cfg, found = validate_dataset(doc, name, str(Path(path).parent), size_multiple)
        issues.extend(issue('main', key, path, f'{name}: {i.key}: {i.message}') for i in found)
        _check_reads(cfg, datasets_root, issues, 'main', lambda i: key, path)
        if len(issues) == before:
            frozen[f'eval_dataset{k[1]}.toml'] = doc
            set_at(main, k, str(Path(run_dir) / f'eval_dataset{k[1]}.toml'))
    return frozen
