"""Component schemas every area shares (errors, config issues) and those of the system routes
(health, settings, config schema)."""

from .types import ANY, BOOL, NUM, STR, arr, obj, opt, ref

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
}
