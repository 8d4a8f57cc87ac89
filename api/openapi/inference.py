"""Component schemas of the Gallery and Inference studio routes: LoRAs, test settings, test runs, results."""

from .types import ANY, BOOL, INT, NUM, STR, arr, obj, opt, ref

SIZE = arr(INT)
CELL_FIELDS = {'id': STR, 'index': INT, 'status': {'type': 'string', 'enum': ['pending', 'running', 'done', 'failed',
                                                                            'skipped']},
               'lora': opt(obj({'id': STR, 'job_id': STR, 'task_id': STR, 'name': STR, 'epoch': opt(INT),
                                'step': opt(INT), 'label': STR})),
               'strength': opt(NUM), 'input': INT, 'prompt': STR, 'image': opt(STR), 'width': INT, 'height': INT,
               'frames': INT, 'fps': INT, 'seed': INT, 'steps': INT, 'guidance': NUM, 'guidance_low': opt(NUM),
               'shift': NUM, 'negative_prompt': STR, 'video': opt(STR), 'poster': opt(STR), 'seconds': opt(NUM),
               'error': opt(STR),
               'preview': {**opt(STR), 'description': 'newest live preview while running (previews/c000_s012.webp)'},
               'preview_step': opt(INT)}
PREVIEW = obj({'enabled': BOOL, 'strengths': arr(NUM), 'seed': INT, 'steps': opt(INT), 'frames': opt(INT),
               'width': opt(INT), 'height': opt(INT), 'area': opt(STR), 'guidance': opt(NUM), 'shift': opt(NUM),
               'backend': {'type': 'string', 'enum': ['embedded', 'comfyui']},
               'device': {'type': 'string', 'enum': ['free', 'training']}, 'enabled_at': opt(NUM),
               'taehv': {**opt(STR), 'description': 'a TAEHV file under the model roots (GET /models: taehv) for '
                         'live previews; null: none'}})
BEST = opt(obj({'job_id': STR, 'lora': STR, 'epoch': opt(INT), 'step': opt(INT), 'marked_at': NUM}))

SCHEMAS = {
    'NameBody': obj({'name': STR}, ['name']),
    'Deleted': obj({'name': STR, 'path': STR, 'deleted': BOOL}),
    'GalleryFolder': obj({'name': STR, 'images': INT, 'updated_at': NUM}),
    'GalleryFolders': obj({'root': STR, 'folders': arr(ref('GalleryFolder'))}),
    'GalleryImage': obj({'name': STR, 'path': STR, 'width': opt(INT), 'height': opt(INT), 'size': INT,
                         'updated_at': NUM, 'error': opt(STR),
                         'proposed': opt({'type': 'object', 'additionalProperties': SIZE,
                                          'description': 'area (480p, 720p) -> [width, height] for the variant'})}),
    'GalleryImages': obj({'name': STR, 'variant': opt(STR), 'images': arr(ref('GalleryImage'))}),
    'GalleryUpload': obj({'added': arr(ref('GalleryImage')), 'rejected': arr(obj({'file': STR, 'message': STR}))}),
    'LoraFile': obj({'path': STR, 'size': INT, 'expert': STR, 'variant': opt(STR)}),
    'TaskLora': obj({'id': STR, 'job_id': STR, 'task_id': STR, 'run': opt(INT), 'name': STR, 'kind': STR, 'number': INT,
                     'epoch': opt(INT), 'step': opt(INT), 'saved_at': NUM, 'created_at': NUM, 'variant': opt(STR),
                     'best': BOOL, 'files': arr(ref('LoraFile'))}),
    'TaskLoras': obj({'task_id': STR, 'best': BEST, 'loras': arr(ref('TaskLora'))}),
    'LoraGroups': obj({'tasks': arr(obj({'task_id': STR, 'task_name': STR, 'best': BEST,
                                         'loras': arr(ref('TaskLora'))}))}),
    'TaskInference': obj({'prompts': arr(STR), 'images': arr(STR), 'negative_prompt': opt(STR), 'preview': PREVIEW,
                          'best': BEST, 'revision': INT, 'updated_at': opt(NUM), 'variant': opt(STR),
                          'defaults': opt({'type': 'object', 'additionalProperties': True}),
                          'preview_error': opt(STR)}),
    'TaskInferencePatch': obj({'prompts': arr(STR), 'images': arr(STR), 'negative_prompt': opt(STR),
                               'preview': PREVIEW, 'best': opt(obj({'job_id': STR, 'name': STR})),
                               'if_revision': INT}),
    'InferRequest': obj({
        'loras': arr({'oneOf': [STR, obj({'job_id': STR, 'name': STR})]}),
        'base': {**BOOL, 'description': 'add a row made by the base model (no LoRA)'},
        'prompts': arr(STR), 'images': {**arr(STR), 'description': 'gallery paths "folder/image.png"'},
        'negative_prompt': STR, 'strengths': arr(NUM), 'seed': INT, 'steps': INT, 'guidance': NUM,
        'guidance_low': NUM, 'shift': NUM, 'frames': {**INT, 'description': '4n+1'},
        'width': INT, 'height': INT, 'area': {'type': 'string', 'enum': ['480p', '720p', 'tiny']},
        'backend': {'type': 'string', 'enum': ['embedded', 'comfyui']},
        'comfyui_models': {'type': 'object', 'additionalProperties': STR,
                           'description': 'unet, unet_low, clip, vae, clip_vision: file names as ComfyUI lists them'},
        'gpus': INT, 'gpu_ids': arr(INT)}),
    'ResultCell': obj({**CELL_FIELDS, 'job_id': STR, 'video_url': opt(STR), 'poster_url': opt(STR),
                       'preview_url': opt(STR),
                       'negative_default': BOOL}),
    'ResultJob': obj({'id': STR, 'state': STR, 'created_at': NUM, 'finished_at': opt(NUM), 'origin': ANY,
                      'message': opt(STR), 'backend': opt(STR), 'variant': opt(STR), 'total': opt(INT), 'done': INT,
                      'failed': INT, 'fraction': opt(NUM), 'settings': opt(ANY)}),
    'Results': obj({'task_id': STR, 'best': BEST, 'jobs': arr(ref('ResultJob')), 'cells': arr(ref('ResultCell'))}),
    'ComfyStatus': obj({'mode': STR, 'url': opt(STR), 'path': STR, 'checkout': BOOL, 'reachable': BOOL,
                        'version': opt(STR), 'error': opt(STR)}),
}
