"""A task's draft is two TOML texts (main + dataset); the form is a view of them.

The form reads and writes named fields (FIELDS) at fixed places in those documents, so the form and
the raw TOML editor always agree. An issue found in a document is reported with the form field it
belongs to (config_check.check does the validating):
    {'file': 'config.toml', 'key': 'optimizer.lr', 'field': 'learning_rate', 'value': -1, 'message': ...}
"""

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import tomli_w
import tomlkit

from ..errors import BadRequest, PathRefused
from ..paths import inside, resolve_path, within_any


@dataclass(frozen=True)
class FormField:
    name: str
    file: str           # 'main', 'dataset' or 'task' (stored in the task record, not in TOML)
    key: tuple          # where the value lives in that document
    doc: str
    aliases: tuple = ()  # other keys whose issues belong to this field


FIELDS = [
    FormField('model_path', 'main', ('model', 'ckpt_path'), 'checkpoint folder (one of GET /api/v1/models)'),
    FormField('transformer_path', 'main', ('model', 'transformer_path'), 'transformer from elsewhere (optional)'),
    FormField('expert', 'main', ('model', 'expert'), "Wan2.2 A14B: 'high_noise', 'low_noise' or 'both'"),
    FormField('transformer_dtype', 'main', ('model', 'transformer_dtype'), "storage dtype of the frozen transformer, e.g. 'float8'"),
    FormField('dataset', 'dataset', ('directory', 0, 'path'), 'dataset folder name under <data>/datasets'),
    FormField('num_repeats', 'dataset', ('directory', 0, 'num_repeats'), 'times the data counts per epoch',
              (('num_repeats',),)),
    FormField('resolutions', 'dataset', ('resolutions',), 'training side lengths or [width, height] pairs',
              (('directory', 0, 'resolutions'),)),
    FormField('frame_buckets', 'dataset', ('frame_buckets',), 'frame counts (4n+1); 1 = images',
              (('directory', 0, 'frame_buckets'),)),
    FormField('epochs', 'main', ('epochs',), 'passes over the dataset'),
    FormField('max_steps', 'main', ('max_steps',), 'stop after this many steps (optional)'),
    FormField('micro_batch_size', 'main', ('micro_batch_size_per_gpu',), 'batch per forward pass per GPU'),
    FormField('gradient_accumulation_steps', 'main', ('gradient_accumulation_steps',), 'micro-batches per optimizer step'),
    FormField('learning_rate', 'main', ('optimizer', 'lr'), 'learning rate'),
    FormField('optimizer', 'main', ('optimizer', 'type'), 'optimizer type (adamw_optimi, adamw8bit, prodigy, ...)'),
    FormField('lr_scheduler', 'main', ('lr_scheduler',), 'constant, linear or cosine'),
    FormField('warmup_steps', 'main', ('warmup_steps',), 'linear warm-up steps'),
    FormField('lora_rank', 'main', ('adapter', 'rank'), 'LoRA rank'),
    FormField('save_every_n_epochs', 'main', ('save_every_n_epochs',), 'save the LoRA every n epochs'),
    FormField('save_every_n_steps', 'main', ('save_every_n_steps',), 'save the LoRA every n steps'),
    FormField('checkpoint_every_n_epochs', 'main', ('checkpoint_every_n_epochs',), 'resumable checkpoint every n epochs'),
    FormField('checkpoint_every_n_minutes', 'main', ('checkpoint_every_n_minutes',), 'resumable checkpoint every n minutes'),
    FormField('eval_every_n_epochs', 'main', ('eval_every_n_epochs',), 'evaluate every n epochs'),
    FormField('eval_every_n_steps', 'main', ('eval_every_n_steps',), 'evaluate every n steps'),
    FormField('eval_dataset', 'main', ('eval_datasets',), 'a dataset of the Data area to evaluate on (its own dataset.toml)',
              (('eval_datasets', 0, 'config'), ('eval_datasets', 0))),
    FormField('eval_split', 'dataset', ('eval_split',), "share of the training files held out as the eval dataset 'heldout'"),
    FormField('pipeline_stages', 'main', ('pipeline_stages',), 'GPUs one model copy is split across'),
    FormField('activation_checkpointing', 'main', ('activation_checkpointing',), "true, false or 'unsloth'"),
    FormField('blocks_to_swap', 'main', ('blocks_to_swap',), 'transformer blocks kept in CPU memory'),
    FormField('seed', 'main', ('seed',), 'seed for shuffling, noise and timesteps'),
    FormField('lora_alpha', 'main', ('adapter', 'alpha'), 'LoRA alpha (scale = alpha / rank; default: the rank)'),
    FormField('timestep_sample_method', 'main', ('model', 'timestep_sample_method'), 'how training timesteps are drawn'),
    FormField('shift', 'main', ('model', 'shift'), 'timestep shift'),
    FormField('min_t', 'main', ('model', 'min_t'), 'lowest training timestep'),
    FormField('max_t', 'main', ('model', 'max_t'), 'highest training timestep'),
    FormField('expert_sampling', 'main', ('model', 'expert_sampling'), 'which expert each sample trains (Wan2.2 A14B, both experts)'),
    FormField('gpus', 'task', ('resources', 'gpus'), 'how many GPUs (or CPU slots) the job needs'),
    FormField('gpu_ids', 'task', ('resources', 'gpu_ids'), 'exactly these GPUs (optional; overrides gpus)'),
    FormField('target', 'task', ('resources', 'target'), "where it trains: 'local', 'slurm' or 'hosts' (GET /api/v1/targets)"),
    FormField('nodes', 'task', ('resources', 'nodes'), 'nodes (machines) it trains on; gpus is per node'),
    FormField('slurm', 'task', ('resources', 'slurm'), 'Slurm options of this task: partition, account, qos, time_limit, '
              'gpus_per_node, sbatch_options (the settings give the rest)'),
]
BY_NAME = {f.name: f for f in FIELDS}
FILES = {'main': 'config.toml', 'dataset': 'dataset.toml'}
FIELD_OF_KEY = {(f.file, k): f.name for f in FIELDS for k in (f.key, *f.aliases)}

DEFAULT_MAIN = """\
# Training settings for this task, in the trainer's TOML dialect (see examples/ in the repository).
# output_dir and dataset are filled in by the studio when the task starts.
epochs = 20
micro_batch_size_per_gpu = 1
gradient_accumulation_steps = 1
pipeline_stages = 1
gradient_clipping = 1.0
warmup_steps = 10
save_every_n_epochs = 2
checkpoint_every_n_minutes = 30
activation_checkpointing = true
save_dtype = {dtype}

[model]
type = 'wan'
ckpt_path = {model}
# bfloat16 on a GPU; a CPU is faster (and exact) in float32.
dtype = {dtype}

[adapter]
type = 'lora'
rank = 32
dtype = {dtype}

[optimizer]
type = 'adamw_optimi'
lr = 2e-5
betas = [0.9, 0.99]
weight_decay = 0.01
eps = 1e-8
"""

DEFAULT_DATASET = """\
# Dataset settings: buckets and the folder(s) of images / videos with captions.
resolutions = [512]
enable_ar_bucket = true
min_ar = 0.5
max_ar = 2.0
num_ar_buckets = 7
frame_buckets = [1, 33]

[[directory]]
path = {dataset}
num_repeats = 1
"""


def _quoted(value):
    return tomli_w.dumps({'v': value})[4:].strip()


def default_texts(model_path='', dataset_path='', cpu=False):
    """The draft of a new task. A dataset folder that carries its own dataset.toml (the demo does)
    gives the dataset draft, its relative paths made absolute."""
    main = DEFAULT_MAIN.replace('{model}', _quoted(model_path)).replace('{dtype}', _quoted('float32' if cpu else 'bfloat16'))
    own = Path(dataset_path) / 'dataset.toml' if dataset_path else None
    doc = parse(own.read_text(encoding='utf-8'), 'dataset')[0] if own and own.is_file() else None
    if not isinstance(doc, dict) or not isinstance(doc.get('directory'), list):
        return main, DEFAULT_DATASET.replace('{dataset}', _quoted(dataset_path))
    for entry in doc['directory']:
        for key in DIRECTORY_PATH_KEYS:
            if isinstance(entry, dict) and isinstance(entry.get(key), str):
                entry[key] = str((Path(dataset_path) / entry[key]).resolve())
    return main, f'# From {own}.\n' + dump(doc)


# ------------------------------------------------------------------------------------------------
# Documents: nested get / set / delete by key path
# ------------------------------------------------------------------------------------------------

def get_at(doc, key):
    node = doc
    for part in key:
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                return None
        elif not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def set_at(doc, key, value):
    node = doc
    for i, part in enumerate(key[:-1]):
        nxt = key[i + 1]
        empty = [] if isinstance(nxt, int) else {}
        if isinstance(part, int):
            while len(node) <= part:
                node.append({})
            node = node[part]
        else:
            if not isinstance(node.get(part), type(empty)):
                node[part] = empty
            node = node[part]
    last = key[-1]
    if value is None:
        if isinstance(node, dict):
            node.pop(last, None)
    elif isinstance(last, int):
        while len(node) <= last:
            node.append({})
        node[last] = value
    else:
        node[last] = value


def parse_key(dotted):
    """'directory[0].path' -> ('directory', 0, 'path')"""
    out = []
    for part in dotted.split('.'):
        m = re.fullmatch(r'([^\[\]]+)((?:\[\d+\])*)', part)
        if not m:
            return tuple(out + [part])
        out.append(m.group(1))
        out += [int(i) for i in re.findall(r'\[(\d+)\]', m.group(2))]
    return tuple(out)


def parse(text, which):
    """(document, issue or None); a syntax error is an issue on the file, not an exception."""
    try:
        return tomllib.loads(text or ''), None
    except tomllib.TOMLDecodeError as e:
        return None, issue(which, '(syntax)', None, f'TOML syntax error: {e}')


def dump(doc):
    """TOML text of a document; one from `editable` keeps the user's comments and layout."""
    return tomlkit.dumps(doc) if isinstance(doc, tomlkit.TOMLDocument) else tomli_w.dumps(doc)


DIRECTORY_PATH_KEYS = ('path', 'mask_path', 'metadata_file', 'default_mask_file')


def directory_paths(doc):
    """(entry, key, value) for every path a dataset document's [[directory]] entries name."""
    for entry in doc.get('directory') or []:
        for key in DIRECTORY_PATH_KEYS:
            value = entry.get(key) if isinstance(entry, dict) else None
            if isinstance(value, str) and value:
                yield entry, key, value


def issue(which, key, value, message, field=None):
    if field is None:
        field = FIELD_OF_KEY.get((which, parse_key(key)))
    return {'file': FILES[which], 'key': key, 'field': field, 'value': value, 'message': message}


# ------------------------------------------------------------------------------------------------
# Form view and form edits
# ------------------------------------------------------------------------------------------------

def form_view(main_text, dataset_text, resources, datasets_root):
    docs = {'main': parse(main_text, 'main')[0], 'dataset': parse(dataset_text, 'dataset')[0],
            'task': {'resources': resources}}
    form = {}
    for f in FIELDS:
        doc = docs[f.file]
        form[f.name] = None if doc is None else get_at(doc, f.key)
    if isinstance(form['dataset'], str):
        form['dataset'] = dataset_name(form['dataset'], datasets_root)
    form['eval_dataset'] = eval_dataset_name(form['eval_dataset'], datasets_root)
    errors = [FILES[w] for w in ('main', 'dataset') if docs[w] is None]
    return form, errors


def dataset_name(path, datasets_root):
    p = Path(path)
    try:
        return str(p.relative_to(datasets_root)) if p.is_absolute() else path
    except ValueError:
        return path


def eval_dataset_name(entries, datasets_root):
    """The form's eval dataset: the folder (under datasets/) of the first eval_datasets entry's file."""
    first = entries[0] if isinstance(entries, list) and entries else None
    path = first.get('config') if isinstance(first, dict) else first
    return dataset_name(str(Path(path).parent), datasets_root) if isinstance(path, str) and path else None


def eval_datasets_entry(name, datasets_root):
    """eval_datasets of the form's eval dataset: that Data-area dataset's own dataset.toml, named after it."""
    folder = inside(datasets_root, str(name), 'eval_dataset')
    return [{'name': folder.name, 'config': str(folder / 'dataset.toml')}]


def editable(text, which):
    """The document for a form edit, keeping the user's comments and layout (tomlkit), or None with a
    syntax error."""
    doc, err = parse(text, which)
    if err:
        return None
    try:
        return tomlkit.parse(text or '')
    except tomlkit.exceptions.TOMLKitError:     # a file only tomllib reads: edit the plain document
        return doc


def apply_form(main_text, dataset_text, resources, changes, *, datasets_root, model_roots):
    """Write form values into the documents, changing only the values set (comments, order and the
    untouched file stay as the user wrote them). Returns (main_text, dataset_text, resources)."""
    docs, texts, touched = {}, {'main': main_text, 'dataset': dataset_text}, set()
    for which, text in texts.items():
        docs[which] = editable(text, which)
        if docs[which] is None and any(BY_NAME.get(n) and BY_NAME[n].file == which for n in changes):
            raise BadRequest(f'{FILES[which]} has a syntax error; fix it in the TOML editor first',
                             field=f'toml.{which}')
    resources = dict(resources)
    for name, value in changes.items():
        f = BY_NAME.get(name)
        if f is None:
            raise BadRequest(f'unknown form field {name!r}', field=name)
        if value == '':
            value = None
        if name == 'dataset' and value is not None:
            value = str(inside(datasets_root, str(value), 'dataset'))
        if name == 'eval_dataset' and value is not None:
            value = eval_datasets_entry(value, datasets_root)
        if name == 'model_path' and value is not None and not within_any(str(value), model_roots):
            raise PathRefused(f'the model checkpoint {value!r} is not inside a model folder', field=name)
        if f.file == 'task':
            resources[f.key[-1]] = value
        elif get_at(docs[f.file], f.key) != value:          # an unchanged value keeps how it was written
            set_at(docs[f.file], f.key, value)
            touched.add(f.file)
    for which in touched:
        texts[which] = dump(docs[which])
    return texts['main'], texts['dataset'], resources


def retarget_dataset(dataset_text, old: Path, new: Path, data_root):
    """A dataset draft with every directory path / mask_path inside the renamed folder `old` moved to
    `new` (comments and layout kept), or None when nothing in it points there."""
    doc = editable(dataset_text, 'dataset')
    if doc is None:
        return None
    changed = False
    for entry, key, value in list(directory_paths(doc)):
        p = resolve_path(value, data_root)
        if p == old or old in p.parents:
            entry[key] = str(new / p.relative_to(old))
            changed = True
    return dump(doc) if changed else None
