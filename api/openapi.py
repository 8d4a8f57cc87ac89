"""/api/v1/openapi.json, built from the registered routes: each view carries its summary, body and
response schema (api.http.doc); the component schemas are below. A route without a description
fails the test that checks every route is documented."""

import re

NUM = {'type': 'number'}
INT = {'type': 'integer'}
STR = {'type': 'string'}
BOOL = {'type': 'boolean'}
ANY = {}


def obj(props, required=(), nullable=False):
    out = {'type': 'object', 'properties': props}
    if required:
        out['required'] = list(required)
    if nullable:
        out['nullable'] = True
    return out


def arr(items):
    return {'type': 'array', 'items': items}


def ref(name):
    return {'$ref': f'#/components/schemas/{name}'}


def opt(schema):
    return {**schema, 'nullable': True}


# The Data area (datasets, uploads, captions, buckets): docs/api.md "Data studio".
MEDIA = obj({'width': INT, 'height': INT, 'frames': INT, 'fps': opt(NUM), 'duration': opt(NUM)}, nullable=True)
DATA_SCHEMAS = {
    'DataFile': obj({'name': STR, 'kind': STR, 'size': INT, 'mtime': NUM, 'media': MEDIA,
                     'status': opt({'type': 'string', 'enum': ['used', 'dropped']}), 'reason': opt(STR),
                     'buckets': arr(STR), 'clips': INT, 'notes': arr(STR), 'caption': opt(STR),
                     'caption_source': opt(STR), 'caption_error': opt(STR), 'caption_model': opt(STR),
                     'caption_origin': {'type': 'string', 'enum': ['none', 'human', 'machine', 'table']}}),
    'FileList': obj({'dataset': STR, 'variant': STR, 'settings': ANY, 'has_config': BOOL, 'issues': arr(ANY),
                     'totals': opt(ANY), 'steps_per_epoch': opt(INT), 'files': arr(ref('DataFile'))}),
    'Caption': obj({'text': opt(STR), 'source': opt(STR), 'origin': STR, 'error': opt(STR), 'model': opt(STR)}),
    'FileInfo': obj({'name': STR, 'kind': STR, 'size': INT, 'mtime': NUM, 'media': opt(ANY), 'error': opt(STR),
                     'playable': BOOL, 'caption': ref('Caption')}),
    'CaptionEdit': obj({'text': STR, 'replace_invalid': BOOL}, ['text']),
    'BulkCaptions': obj({'op': {'type': 'string', 'enum': ['prefix', 'suffix', 'replace']}, 'text': STR, 'find': STR,
                         'replace': STR, 'regex': BOOL, 'case': BOOL, 'files': arr(STR), 'q': STR, 'apply': BOOL},
                        ['op']),
    'BulkResult': obj({'op': STR, 'matched': INT, 'changed': INT, 'applied': BOOL, 'files': arr(STR),
                       'preview': arr(obj({'file': STR, 'before': STR, 'after': STR})),
                       'skipped': arr(obj({'file': STR, 'reason': STR}))}),
    'TrimRequest': obj({'file': STR, 'start': NUM, 'end': NUM}, ['file', 'start', 'end']),
    'TrimResult': obj({'file': STR, 'start': NUM, 'end': NUM}),
    'SplitRequest': obj({'file': STR, 'threshold': NUM, 'min_length': NUM, 'cuts': arr(NUM), 'dry_run': BOOL}, ['file']),
    'SplitResult': obj({'duration': NUM, 'cuts': arr(NUM), 'note': opt(STR),
                        'segments': arr(obj({'start': NUM, 'end': NUM, 'file': opt(STR)}))}),
    'ImportRequest': obj({'path': STR, 'mode': {'type': 'string', 'enum': ['copy', 'link']}}, ['path']),
    'ImportResult': obj({'source': STR, 'imported': arr(obj({'source': STR, 'file': STR, 'caption': BOOL})),
                         'skipped': arr(obj({'source': STR, 'reason': STR})), 'notes': arr(STR)}),
    'UploadCreate': obj({'filename': STR, 'size': INT, 'replace': BOOL, 'client_key': STR}, ['filename', 'size']),
    'Upload': obj({'id': STR, 'dataset': STR, 'filename': STR, 'size': INT, 'received': INT, 'replace': BOOL,
                   'client_key': opt(STR), 'state': {'type': 'string', 'enum': ['uploading', 'done', 'rejected']},
                   'created_at': NUM, 'updated_at': NUM, 'expires_at': opt(NUM), 'chunk_bytes': INT,
                   'file': opt(STR), 'reason': opt(STR), 'media': opt(ANY)}),
    'UploadList': obj({'uploads': arr(ref('Upload'))}),
    'UploadCancelled': obj({'id': STR, 'cancelled': BOOL}),
    'Captioning': obj({'prompt': STR, 'frames': INT, 'max_new_tokens': INT, 'overwrite': arr(STR),
                       'models': arr(obj({'name': STR, 'path': STR, 'model_type': STR}))}),
    'CaptionJobCreate': obj({'model_path': STR, 'prompt': STR, 'overwrite': {'type': 'string',
                                                                           'enum': ['none', 'machine', 'all']},
                             'files': arr(STR), 'frames': INT, 'max_new_tokens': INT, 'gpus': INT,
                             'gpu_ids': arr(INT)}, ['model_path']),
    'CaptionJob': obj({'id': STR, 'state': STR, 'kind': STR, 'created_at': NUM, 'finished_at': opt(NUM),
                       'message': opt(STR), 'request': ANY, 'caption': ANY, 'status': opt(ANY),
                       'progress': opt(obj({'step': INT, 'total_steps': INT, 'written': INT, 'skipped': INT,
                                            'failed': INT, 'file': STR, 'examples_per_s': NUM, 'eta_s': NUM}))}),
    'CaptionJobList': obj({'jobs': arr(ref('CaptionJob'))}),
    'BucketRequest': obj({'settings': {'type': 'object', 'additionalProperties': True},
                          'options': obj({'variant': STR, 'video_clip_mode': STR, 'micro_batch_size': INT,
                                          'image_micro_batch_size': INT, 'gradient_accumulation_steps': INT,
                                          'gpus': INT, 'pipeline_stages': INT, 'seed': INT})}),
    'BucketView': obj({'variant': STR, 'options': ANY, 'settings': ANY, 'has_config': BOOL, 'issues': arr(ANY),
                       'variants': arr(obj({'id': STR, 'framerate': INT, 'size_multiple': INT})),
                       'spec': ANY, 'totals': opt(ANY), 'problems': arr(STR), 'steps_per_epoch': opt(INT),
                       'dropped_per_epoch': opt(INT),
                       'buckets': arr(obj({'bucket': arr(INT), 'label': STR, 'items': INT, 'items_per_epoch': INT,
                                           'files': INT, 'micro_batch': INT, 'global_batch': INT, 'steps': INT,
                                           'dropped': INT})),
                       'files': arr(obj({'name': STR, 'kind': opt(STR), 'status': STR, 'reason': opt(STR),
                                         'buckets': arr(STR), 'clips': INT, 'notes': arr(STR)})),
                       'suggestions': opt(obj({'ar_buckets': arr(NUM), 'min_ar': opt(NUM), 'max_ar': opt(NUM),
                                               'frame_buckets': arr(INT), 'notes': arr(STR)}))}),
    'DatasetConfig': obj({'exists': BOOL, 'path': STR, 'toml': opt(STR), 'settings': ANY}),
    'ConfigSave': obj({'settings': {'type': 'object', 'additionalProperties': True}, 'variant': STR}),
}

SCHEMAS = {
    'Error': obj({'error': obj({'code': STR, 'message': STR, 'field': opt(STR), 'issues': arr(ref('Issue'))},
                               ['code', 'message'])}, ['error']),
    'Issue': obj({'file': STR, 'key': STR, 'field': opt(STR), 'value': ANY, 'message': STR}),
    'Resources': obj({'gpus': INT, 'gpu_ids': opt(arr(INT))}),
    'GpuRequest': obj({'gpus': INT, 'gpu_ids': arr(INT)}),
    'TomlPair': obj({'main': STR, 'dataset': STR}),
    'TaskCreate': obj({'name': STR, 'prefix': STR, 'toml': ref('TomlPair'), 'resources': ref('Resources'),
                       'dataset': STR,
                       'form': {'type': 'object', 'additionalProperties': True}}),
    'TaskPatch': obj({'name': STR, 'form': {'type': 'object', 'additionalProperties': True,
                                            'description': 'form field -> value; null or "" removes the key'},
                      'toml': ref('TomlPair'), 'if_revision': INT}),
    'TaskCopy': obj({'name': STR}),
    'ProgressBrief': obj({k: opt(NUM) for k in ('step', 'total_steps', 'epoch', 'total_epochs', 'fraction',
                                                 'steps_per_s', 'eta_s')} | {'status': opt(STR), 'phase': opt(STR),
                                                                   'loss': opt(ref('LatestPoint'))},
                         nullable=True),
    'JobBrief': obj({'id': STR, 'task_id': STR, 'state': STR, 'created_at': NUM, 'updated_at': NUM,
                     'finished_at': opt(NUM), 'request': ref('Resources'), 'retries': INT, 'message': opt(STR),
                     'origin': ANY, 'attempt': INT, 'devices': arr(INT), 'progress': ref('ProgressBrief')}),
    'TaskSummary': obj({'id': STR, 'name': STR, 'created_at': NUM, 'updated_at': NUM, 'revision': INT,
                        'resources': ref('Resources'), 'state': STR, 'latest_job': opt(ref('JobBrief'))}),
    'TaskList': obj({'tasks': arr(ref('TaskSummary'))}),
    'Task': obj({'id': STR, 'name': STR, 'prefix': STR, 'created_at': NUM, 'updated_at': NUM, 'revision': INT,
                 'resources': ref('Resources'), 'toml': ref('TomlPair'), 'copied_from': opt(STR), 'deleting': BOOL,
                 'state': STR, 'form': {'type': 'object', 'additionalProperties': True},
                 'form_errors': arr(STR), 'model': opt(ref('Model')), 'jobs': arr(ref('JobBrief'))}),
    'DeleteResult': obj({'id': STR, 'deleted': BOOL, 'deleting': BOOL}),
    'Validation': obj({'ok': BOOL, 'issues': arr(ref('Issue')), 'variant': opt(ref('Variant')), 'world_size': INT}),
    'Attempt': obj({'n': INT, 'started_at': NUM, 'ended_at': opt(NUM), 'pid': opt(INT), 'create_time': opt(NUM),
                    'port': INT, 'devices': arr(INT), 'device_kind': STR, 'resume_from': opt(STR),
                    'command': arr(STR), 'exit_code': opt(INT), 'hung_at': opt(NUM),
                    'outcome': opt({'type': 'string', 'enum': ['done', 'stopped', 'refused', 'crashed', 'hung',
                                                               'interrupted', 'failed']}),
                    'reason': opt(STR), 'events_offset': INT}),
    'Job': obj({'id': STR, 'task_id': STR, 'kind': STR,
                'state': {'type': 'string', 'enum': ['queued', 'running', 'stopping', 'done', 'stopped', 'failed',
                                                     'cancelled', 'interrupted']},
                'created_at': NUM, 'updated_at': NUM, 'queued_at': NUM, 'finished_at': opt(NUM), 'run_dir': STR,
                'request': ref('Resources'), 'origin': ANY, 'resume_from': opt(STR), 'attempts': arr(ref('Attempt')),
                'retries': INT, 'stop': opt(ANY), 'message': opt(STR), 'progress': opt(ref('Progress')),
                'queue_position': opt(INT)}),
    'JobList': obj({'jobs': arr(ref('JobBrief'))}),
    'StopRequest': obj({'save': BOOL}),
    'RestartRequest': obj({'checkpoint': STR, 'gpus': INT, 'gpu_ids': arr(INT)}, ['checkpoint']),
    'ContinueRequest': obj({'epochs': INT, 'gpus': INT, 'gpu_ids': arr(INT)}, ['epochs']),
    'Progress': obj({'status': opt(STR), 'message': opt(STR), 'failure': opt(STR), 'phase': opt(STR),
                     'step': opt(INT), 'total_steps': opt(INT), 'epoch': opt(INT), 'total_epochs': opt(INT),
                     'epoch_step': opt(INT), 'steps_per_epoch': opt(INT), 'examples_per_s': opt(NUM),
                     'steps_per_s': opt(NUM), 'eta_s': opt(NUM), 'fraction': opt(NUM),
                     'cache': opt(obj({'done': INT, 'total': INT, 'items_per_s': opt(NUM)})),
                     'last_event_age_s': opt(NUM), 'heartbeat_age_s': opt(NUM), 'loss': opt(ref('LatestPoint'))}),
    'LatestPoint': obj({'step': INT, 'value': NUM}),
    'Series': obj({'steps': arr(INT), 'values': arr(opt(NUM)), 'epochs': arr(opt(INT))}),
    'Metrics': obj({'names': arr(STR), 'series': {'type': 'object', 'additionalProperties': ref('Series')},
                    'last_step': opt(INT)}),
    'LogChunk': obj({'offset': INT, 'next_offset': INT, 'size': INT, 'reset': BOOL, 'text': STR, 'partial': STR,
                     'eof': BOOL}),
    'Checkpoint': obj({'tag': STR, 'path': STR, 'step': opt(INT), 'epoch': opt(INT), 'created_at': NUM}),
    'CheckpointList': obj({'checkpoints': arr(ref('Checkpoint'))}),
    'Lora': obj({'name': STR, 'kind': STR, 'number': INT, 'created_at': NUM,
                 'files': arr(obj({'path': STR, 'size': INT, 'expert': opt(STR)}))}),
    'Artifacts': obj({'loras': arr(ref('Lora')), 'checkpoints': arr(ref('Checkpoint')), 'events': arr(ANY)}),
    'QueueEntry': obj({'position': INT, 'job_id': STR, 'task_id': STR, 'task_name': opt(STR),
                       'request': ref('Resources'), 'queued_at': NUM, 'retries': INT, 'resume_from': opt(STR),
                       'waiting_reason': STR}),
    'Queue': obj({'policy': STR, 'jobs': arr(ref('QueueEntry'))}),
    'QueueMove': obj({'to': INT, 'by': INT, 'where': {'type': 'string', 'enum': ['up', 'down', 'top', 'bottom']}}),
    'Gpu': obj({'index': INT, 'name': STR, 'memory_total_gib': opt(NUM), 'memory_used_gib': opt(NUM),
                'utilization_pct': opt(NUM), 'temperature_c': opt(NUM), 'free': BOOL, 'busy_outside': BOOL,
                'held_by': opt(obj({'job_id': STR, 'task_id': STR, 'task_name': opt(STR)}))}),
    'Gpus': obj({'mode': {'type': 'string', 'enum': ['gpu', 'cpu']}, 'provider': STR, 'message': STR,
                 'read_at': NUM, 'memory_threshold_gib': opt(NUM), 'devices': arr(ref('Gpu'))}),
    'Variant': obj({'id': STR, 'task': STR, 'experts': arr(STR), 'size_multiple': INT, 'framerate': INT,
                    'vae': STR}),
    'Model': obj({'name': STR, 'path': STR, 'root': STR, 'layout': {'type': 'string', 'enum': ['wan', 'diffusers']},
                  'variant': opt(ref('Variant')), 'error': opt(STR)}),
    'ModelList': obj({'roots': arr(STR), 'models': arr(ref('Model'))}),
    'Dataset': obj({'name': STR, 'path': STR, 'images': INT, 'videos': INT, 'captions': INT, 'files': INT,
                    'size_bytes': INT, 'has_config': BOOL, 'modified_at': NUM, 'duration_s': NUM, 'unreadable': INT,
                    'retargeted': arr(STR)}),
    'DatasetList': obj({'datasets': arr(ref('Dataset'))}),
    **DATA_SCHEMAS,
    'Health': obj({'ok': BOOL, 'time': NUM, 'scheduler_running': BOOL}),
    'Settings': {'type': 'object', 'additionalProperties': True},
    'ConfigSchema': obj({'form_fields': arr(obj({'name': STR, 'file': STR, 'key': STR, 'doc': STR})),
                         'keys': arr(obj({'section': STR, 'key': STR, 'default': ANY, 'doc': STR,
                                          'choices': arr(ANY)}))}),
    'OpenApi': {'type': 'object', 'additionalProperties': True},
}

from .openapi_inference import BEST, SCHEMAS as INFERENCE_SCHEMAS  # noqa: E402 (uses the helpers above)

SCHEMAS.update(INFERENCE_SCHEMAS)
SCHEMAS['JobBrief']['properties']['kind'] = STR                       # train | infer
SCHEMAS['TaskSummary']['properties']['best_lora'] = BEST              # marked in the Inference studio
SCHEMAS['Task']['properties']['best_lora'] = BEST

ERRORS = {'400': 'bad request or path refused', '401': 'missing or wrong token', '404': 'not found',
          '409': 'not possible in the current state', '413': 'request body too large',
          '422': 'refused: config issues or impossible request'}


def openapi_path(rule):
    return re.sub(r'<(?:[^:<>]+:)?([^<>]+)>', r'{\1}', rule)


def operation(view, rule, method, tag):
    meta = view.openapi
    params = [{'name': a, 'in': 'path', 'required': True, 'schema': STR} for a in sorted(rule.arguments)]
    params += [{'name': q, 'in': 'query', 'required': False, 'schema': {'type': t}} for q, t in meta['query'].items()]
    content = ({'application/octet-stream': {'schema': {'type': 'string', 'format': 'binary'}}} if meta['binary']
               else {'application/json': {'schema': ref(meta['response']) if meta['response'] else ANY}})
    op = {'summary': meta['summary'], 'operationId': f'{view.__name__}', 'tags': [meta['tags'] or tag],
          'parameters': params,
          'responses': {str(meta['status']): {'description': 'success', 'content': content},
                        **{code: {'description': text, 'content': {'application/json': {'schema': ref('Error')}}}
                           for code, text in ERRORS.items()}}}
    if meta['body']:
        op['requestBody'] = {'required': False, 'content': {'application/json': {'schema': ref(meta['body'])}}}
    return op


def build_spec(app):
    paths = {}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith('/api/v1'):
            continue
        view = app.view_functions[rule.endpoint]
        if not hasattr(view, 'openapi'):
            continue
        tag = rule.endpoint.split('.')[0]
        for method in sorted(rule.methods - {'HEAD', 'OPTIONS'}):
            paths.setdefault(openapi_path(rule.rule), {})[method.lower()] = operation(view, rule, method, tag)
    return {
        'openapi': '3.0.3',
        'info': {'title': 'ODEO Studio API', 'version': '1',
                 'description': 'Training tasks, GPU-aware job queue, monitoring. See docs/api.md.'},
        'components': {'schemas': SCHEMAS,
                       'securitySchemes': {'bearer': {'type': 'http', 'scheme': 'bearer'},
                                           'query': {'type': 'apiKey', 'in': 'query', 'name': 'token'}}},
        'security': [{'bearer': []}, {'query': []}],
        'paths': paths,
    }
