"""Component schemas of the Models area: models under the model roots, downloads, deleting."""

from .types import BOOL, INT, NUM, STR, arr, obj, opt, ref

SOURCE = obj({'repo': STR, 'revision': STR, 'commit': STR})

SCHEMAS = {
    'ModelSource': obj({'kind': STR, 'variant': STR, 'layout': STR, 'downloaded_at': NUM, 'job_id': opt(STR),
                        'sources': arr(SOURCE)}),
    'ModelUsers': obj({'jobs': arr(obj({'job_id': STR, 'task_id': STR, 'kind': STR, 'state': STR})),
                       'tasks': arr(obj({'task_id': STR, 'name': STR}))}),
    'Model': obj({'name': STR, 'path': STR, 'root': STR, 'layout': {'type': 'string', 'enum': ['wan', 'diffusers']},
                  'variant': opt(ref('Variant')), 'error': opt(STR), 'size_bytes': INT,
                  'source': opt(ref('ModelSource')), 'used_by': ref('ModelUsers')}),
    'Taehv': obj({'name': STR, 'path': STR, 'root': STR, 'latent_channels': INT, 'patch_size': INT,
                  'vae': {'type': 'string', 'enum': ['wan2.1', 'wan2.2']}, 'size_bytes': INT}),
    'DownloadChoice': obj({'id': STR, 'kind': {'type': 'string', 'enum': ['wan', 'captioner']},
                           'layouts': {'type': 'object', 'additionalProperties': arr(STR)}}),
    'ModelList': obj({'roots': arr(STR), 'models': arr(ref('Model')), 'taehv': arr(ref('Taehv')),
                      'downloads': arr(ref('Download')),
                      'choices': arr(ref('DownloadChoice')), 'hub': obj({'endpoint': STR, 'token_set': BOOL})}),
    'DownloadRequest': obj({'variant': STR, 'layout': {'type': 'string', 'enum': ['official', 'diffusers', 'comfy']},
                            'name': STR, 'revision': STR, 'root': STR}, ['variant']),
    'Download': obj({'id': STR, 'state': STR, 'kind': STR, 'created_at': NUM, 'finished_at': opt(NUM),
                     'message': opt(STR),
                     'download': obj({'name': STR, 'root': STR, 'folder': STR, 'variant': STR, 'layout': STR,
                                      'total_bytes': INT, 'sources': arr(SOURCE)}),
                     'status': opt({'type': 'object', 'additionalProperties': True}),
                     'progress': opt(obj({'phase': STR, 'bytes_done': INT, 'bytes_total': INT, 'bytes_per_s': NUM,
                                          'eta_s': opt(NUM), 'file': opt(STR), 'files_done': INT,
                                          'files_total': INT}))}),
    'ModelDeleted': obj({'name': STR, 'path': STR, 'deleted': BOOL}),
}
