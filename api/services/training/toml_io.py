"""A task's TOML pair in and out, in diffusion-pipe's dialect.

Import: a main config as diffusion-pipe reads it (its `output_dir` and `dataset` keys point at places on
the machine it came from: both are left out, the studio sets them when a run starts) and, optionally,
the dataset TOML it named. Without a dataset TOML the new task gets the default dataset draft.

Export: the draft as two files a shell run of the trainer (or diffusion-pipe) takes, the main config
naming the dataset file beside it: `<task>-config.toml` and `<task>-dataset.toml`.
"""

import tomlkit

from ..errors import BadRequest
from ..jobs.service import safe_file_name
from .form import FILES, dump, editable, parse
from .tasks import MAX_TOML

STUDIO_KEYS = ('output_dir', 'dataset')        # set by the studio at start


def _checked(text, which):
    if not isinstance(text, str):
        raise BadRequest(f'{FILES[which]} must be text', field=which)
    if len(text.encode()) > MAX_TOML:
        raise BadRequest(f'{FILES[which]} is larger than {MAX_TOML} bytes', field=which)
    err = parse(text, which)[1]
    if err:
        raise BadRequest(f'{FILES[which]}: {err["message"]}', field=which)
    return text


def import_texts(main_text, dataset_text=None):
    """(main draft, dataset draft or None) from uploaded texts; refuses what the trainer could not read."""
    doc = editable(_checked(main_text, 'main'), 'main')
    dropped = [k for k in STUDIO_KEYS if k in doc]
    for key in dropped:
        del doc[key]
    main = dump(doc)
    if dropped:
        main = f'# Imported; {" and ".join(dropped)} left out: the studio sets them when a run starts.\n' + main
    if dataset_text is None or dataset_text == '':
        return main, None
    return main, _checked(dataset_text, 'dataset')


def export_names(task):
    base = safe_file_name(task['name'])
    return {'main': f'{base}-config.toml', 'dataset': f'{base}-dataset.toml'}


def export_text(task, which):
    """(file name, text) of one file of a task's draft; the main file names the dataset file beside it."""
    if which not in FILES:
        raise BadRequest("which must be 'main' or 'dataset'", field='which')
    names = export_names(task)
    text = task['toml'][which]
    if which == 'main':
        doc = editable(text, 'main')
        if doc is not None and 'dataset' not in doc:
            body = tomlkit.document()
            body['dataset'] = names['dataset']
            text = dump(body) + text
    return names[which], text
