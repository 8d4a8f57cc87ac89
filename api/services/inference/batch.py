"""Batch evaluation (`eval` jobs): the rows of a request and the job's command line.

A batch is a list of rows, each one input of the grid: a prompt, and for image-to-video models a gallery image.
A request gives them as `rows` ([{"prompt", "image"}]), as `csv` (text with an `image,prompt` header, or
`prompt` alone; quoted fields may hold commas and newlines) or as `prompts` (a list of text). Every row is
made with every chosen LoRA and strength, spread over the devices the job is given (api/jobs/evaluate.py).
"""

import csv
import io

from ..errors import BadRequest, Invalid
from ..jobs.launcher import module_command
from .request import MAX_PROMPT_CHARS

MAX_ROWS = 1000
MAX_EVAL_CELLS = 4000            # videos in one batch evaluation
MAX_CSV_CHARS = 1_000_000


def _csv_rows(text):
    if not isinstance(text, str) or len(text) > MAX_CSV_CHARS:
        raise BadRequest(f'csv must be text of at most {MAX_CSV_CHARS} characters', field='csv')
    table = [r for r in csv.reader(io.StringIO(text.strip())) if any(c.strip() for c in r)]
    if not table:
        raise Invalid('the CSV has no rows', field='csv')
    head = [c.strip().lower() for c in table[0]]
    if 'prompt' in head:
        pi, ii = head.index('prompt'), head.index('image') if 'image' in head else None
        table = table[1:]
    else:                                  # no header: image,prompt (two columns) or prompt alone
        pi, ii = (1, 0) if len(table[0]) >= 2 else (0, None)
    out = []
    for n, r in enumerate(table, start=2 if 'prompt' in head else 1):
        if pi >= len(r):
            raise Invalid(f'CSV line {n} has no prompt column', field='csv')
        out.append({'prompt': r[pi], 'image': (r[ii].strip() or None) if ii is not None and ii < len(r) else None})
    return out


def batch_rows(body, task):
    """[{'prompt', 'image'}] of a batch request, checked; task: 't2v', 'i2v' or 'ti2v' (the model's)."""
    given = [k for k in ('rows', 'csv', 'prompts') if body.get(k) is not None]
    if len(given) != 1:
        raise BadRequest('give the batch as exactly one of rows, csv or prompts', field='rows')
    if given[0] == 'csv':
        rows = _csv_rows(body['csv'])
    elif given[0] == 'prompts':
        if not isinstance(body['prompts'], list):
            raise BadRequest('prompts must be a list of text', field='prompts')
        rows = [{'prompt': p, 'image': None} for p in body['prompts']]
    else:
        rows = body['rows']
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise BadRequest('rows must be a list of {"prompt", "image"}', field='rows')
    field = given[0]
    rows = [{'prompt': r.get('prompt'), 'image': r.get('image') or None} for r in rows]
    if not rows or len(rows) > MAX_ROWS:
        raise Invalid(f'a batch has 1 to {MAX_ROWS} rows ({len(rows)} given)', field=field)
    for n, r in enumerate(rows, start=1):
        if not isinstance(r['prompt'], str) or len(r['prompt']) > MAX_PROMPT_CHARS:
            raise BadRequest(f'row {n}: the prompt must be text of at most {MAX_PROMPT_CHARS} characters', field=field)
        if r['image'] is not None and not isinstance(r['image'], str):
            raise BadRequest(f'row {n}: image must be a gallery path such as folder/x.png', field=field)
        r['prompt'] = ' '.join(r['prompt'].split())
        if task == 'i2v' and not r['image']:
            raise Invalid(f'row {n}: an image-to-video model needs an image in every row', field=field)
        if task == 't2v' and r['image']:
            raise Invalid(f'row {n}: this model makes videos from text only: leave the images out', field=field)
        if not r['prompt'] and not r['image']:
            raise Invalid(f'row {n} has neither a prompt nor an image', field=field)
    return rows


def eval_command(settings, job, mode, devices, port, run_dir, resume_from):
    """`python -m api.jobs.evaluate --run_dir <run> --devices <ids> --mode gpu|cpu`: the parent sees every
    device of the job and gives one to each worker."""
    argv, env = module_command('api.jobs.evaluate')(settings, job, mode, devices, port, run_dir, resume_from)
    return argv + ['--devices', ','.join(str(d) for d in devices), '--mode', 'gpu' if mode == 'gpu' else 'cpu'], env
