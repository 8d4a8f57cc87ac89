"""Component schemas of training tasks and their validation (the models they train on: models.py)."""

from .inference import BEST
from .types import BOOL, INT, NUM, STR, arr, obj, opt, ref

SCHEMAS = {
    'TomlPair': obj({'main': STR, 'dataset': STR}),
    'TaskCreate': obj({'name': STR, 'prefix': STR, 'toml': ref('TomlPair'), 'resources': ref('Resources'),
                       'dataset': STR,
                       'form': {'type': 'object', 'additionalProperties': True}}),
    'TaskPatch': obj({'name': STR, 'form': {'type': 'object', 'additionalProperties': True,
                                            'description': 'form field -> value; null or "" removes the key'},
                      'toml': ref('TomlPair'), 'if_revision': INT}),
    'TaskCopy': obj({'name': STR}),
    'TaskImport': obj({'main': STR, 'dataset': STR, 'name': STR}, ['main']),
    'TaskSummary': obj({'id': STR, 'name': STR, 'created_at': NUM, 'updated_at': NUM, 'revision': INT,
                        'resources': ref('Resources'), 'state': STR, 'latest_job': opt(ref('JobBrief')),
                        'best_lora': BEST}),             # marked in the Inference studio
    'TaskList': obj({'tasks': arr(ref('TaskSummary'))}),
    'Task': obj({'id': STR, 'name': STR, 'prefix': STR, 'created_at': NUM, 'updated_at': NUM, 'revision': INT,
                 'resources': ref('Resources'), 'toml': ref('TomlPair'), 'copied_from': opt(STR), 'deleting': BOOL,
                 'state': STR, 'form': {'type': 'object', 'additionalProperties': True},
                 'form_errors': arr(STR), 'model': opt(ref('Model')), 'jobs': arr(ref('JobBrief')),
                 'best_lora': BEST}),
    'DeleteResult': obj({'id': STR, 'deleted': BOOL, 'deleting': BOOL}),
    'Validation': obj({'ok': BOOL, 'issues': arr(ref('Issue')), 'variant': opt(ref('Variant')), 'world_size': INT}),
    'RestartRequest': obj({'checkpoint': STR, 'gpus': INT, 'gpu_ids': arr(INT)}, ['checkpoint']),
    'TaehvStart': obj({'taehv': {'type': 'object', 'additionalProperties': True,
                                 'description': 'the [taehv] table: init_from, preset, loss weights (docs/taehv.md)'},
                       'settings': {'type': 'object', 'additionalProperties': True,
                                    'description': 'top-level TAEHV keys, e.g. max_steps, eval_videos'},
                       'gpus': INT, 'gpu_ids': arr(INT)}),
    'ContinueRequest': obj({'epochs': INT, 'gpus': INT, 'gpu_ids': arr(INT)}, ['epochs']),
    'Variant': obj({'id': STR, 'task': STR, 'experts': arr(STR), 'size_multiple': INT, 'framerate': INT,
                    'vae': STR}),
}
