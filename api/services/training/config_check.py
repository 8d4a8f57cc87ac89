"""Validate a task's TOML pair as it would run, and the rules about paths that come with it.

Runs the trainer's own schema (utils.config.validate_main / validate_dataset) after the studio has
set output_dir and dataset, resolved every path against the data root and checked that it stays in
its root; every issue comes back mapped to its form field (form.issue).
"""

from dataclasses import dataclass
from pathlib import Path

from utils.config import validate_dataset, validate_main

from ..paths import resolve_path, within_any
from .form import DIRECTORY_PATH_KEYS, FILES, get_at, issue, parse, set_at


@dataclass
class Checked:
    main: dict | None           # main document with paths made absolute (what gets frozen)
    dataset: dict | None
    issues: list
    variant: dict | None        # the model's variant, when the checkpoint is known


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
        if isinstance(v, str) and not within_any(resolve_path(v, data_root), [data_root]):
            issues.append(issue('main', key, v, f'points outside the data root {data_root}; '
                                                'leave it out, the studio sets it'))
    main['output_dir'], main['dataset'] = str(output_dir), str(dataset_file)
    for which, key, roots, where in _path_rules(data_root, datasets_root, model_roots):
        doc = main if which == 'main' else dataset
        for k in _expand(doc, key):
            v = get_at(doc, k)
            if not isinstance(v, str) or not v:
                continue
            p = resolve_path(v, data_root)
            if not within_any(p, roots):
                issues.append(issue(which, _dotted(k), v, f'{p} is outside {where}'))
            else:
                set_at(doc, k, str(p))
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
    _, ds_issues = validate_dataset(dataset, FILES['dataset'], str(data_root), size_multiple)
    seen = {(i['file'], i['key']) for i in issues}
    for which, found in (('main', main_issues), ('dataset', ds_issues)):
        for i in found:
            d = i.to_dict()
            found_issue = issue(which, d['field'], d['value'], d['message'])
            key = (found_issue['file'], found_issue['field'] or found_issue['key'], found_issue['message'])
            if (FILES[which], d['field']) not in seen and key not in seen:
                issues.append(found_issue)
                seen.add(key)
    return Checked(main, dataset, issues, variant)
