"""/api/v1/openapi.json, built from the registered routes: each view carries its summary, body and
response schema (api.http.doc); the component schemas come from one module per area. A route without a
description fails the test that checks every route is documented."""

import re

from . import accounts, backups, data, inference, jobs, models, system, training
from .types import ANY, STR, ref

SCHEMAS = {**system.SCHEMAS, **jobs.SCHEMAS, **training.SCHEMAS, **data.SCHEMAS, **inference.SCHEMAS,
           **models.SCHEMAS, **backups.SCHEMAS, **accounts.SCHEMAS}

ERRORS = {'400': 'bad request or path refused', '401': 'missing or wrong token, or not signed in',
          '403': 'refused: cross-site, a viewer, or not the owner', '404': 'not found',
          '409': 'not possible in the current state', '413': 'request body too large',
          '422': 'refused: config issues or impossible request', '429': 'too many failed logins',
          '502': 'the model hub did not answer', '507': 'not enough disk space'}


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
                                           'query': {'type': 'apiKey', 'in': 'query', 'name': 'token'},
                                           'session': {'type': 'apiKey', 'in': 'cookie', 'name': 'odeo_session'}}},
        'security': [{'bearer': []}, {'query': []}, {'session': []}],
        'paths': paths,
    }
