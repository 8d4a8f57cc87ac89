"""Component schemas every area shares (errors, config issues) and those of the system routes
(health, settings, config schema)."""

from .types import ANY, BOOL, INT, NUM, STR, arr, obj, opt, ref

SCHEMAS = {
    'Error': obj({'error': obj({'code': STR, 'message': STR, 'field': opt(STR), 'issues': arr(ref('Issue'))},
                               ['code', 'message'])}, ['error']),
    'Issue': obj({'file': STR, 'key': STR, 'field': opt(STR), 'value': ANY, 'message': STR}),
    'Health': obj({'ok': BOOL, 'time': NUM, 'scheduler_running': BOOL,
                   'storage': opt(obj({'code': STR, 'errno': STR, 'path': opt(STR), 'reason': STR, 'message': STR}))}),
    'Settings': {'type': 'object', 'additionalProperties': True},
    'ConfigSchema': obj({'form_fields': arr(obj({'name': STR, 'file': STR, 'key': STR, 'doc': STR})),
                         'keys': arr(obj({'section': STR, 'key': STR, 'default': ANY, 'doc': STR,
                                          'choices': arr(ANY)}))}),
    'OpenApi': {'type': 'object', 'additionalProperties': True},
    'EditableSettings': obj({'settings': ref('Settings'), 'file': STR, 'editable': {'type': 'object', 'additionalProperties': True},
                             'limits': {'type': 'object', 'additionalProperties': arr(NUM)},
                             'locked': {'type': 'object', 'additionalProperties': STR}}),
    'SettingsChange': obj({'comfyui_mode': STR, 'comfyui_url': STR, 'model_roots': arr(STR), 'import_roots': arr(STR),
                           'gpu_memory_threshold_gib': NUM, 'retry_limit': INT, 'heartbeat_timeout_s': NUM}),
    'ComfyTest': obj({'comfyui_url': STR, 'comfyui_mode': STR}),
    'Resources': obj({'interval_s': NUM, 'keep': INT, 'mode': STR, 'stored': STR,
                      'samples': arr(obj({'t': NUM, 'cpu_pct': NUM, 'ram_used_gib': NUM, 'ram_total_gib': NUM,
                                          'gpus': arr(obj({'index': INT, 'utilization_pct': opt(NUM),
                                                           'memory_used_gib': opt(NUM), 'memory_total_gib': opt(NUM),
                                                           'temperature_c': opt(NUM)}))}))}),
    'EstimateRequest': obj({'variant': STR, 'width': INT, 'height': INT, 'frames': INT, 'micro_batch_size': INT,
                            'lora_rank': INT, 'blocks_to_swap': INT, 'activation_checkpointing': BOOL,
                            'transformer_dtype': STR, 'expert': STR, 'gpus': INT, 'items_per_epoch': INT,
                            'gpu_name': STR}),
    'Estimate': obj({'variant': STR, 'variants': arr(STR), 'tokens': INT, 'gpu': opt(STR), 'gpu_memory_gib': opt(NUM),
                     'memory_gib': obj({k: NUM for k in ('weights', 'activations', 'lora_optimizer', 'overhead', 'total')}),
                     'step_tflop': NUM, 'micro_step_s': opt(NUM), 'epoch_s': opt(NUM), 'micro_steps_per_epoch': opt(INT),
                     'calibrated': BOOL, 'note': STR}),
}
