"""The OpenAPI document describes every route the app serves under /api/v1."""

import json
import re

from api.openapi.spec import openapi_path


def test_every_route_is_in_the_openapi_document(make_app):
    app = make_app()
    spec = app.test_client().get('/api/v1/openapi.json').get_json()
    assert spec['openapi'].startswith('3.')
    routes = [(openapi_path(r.rule), m.lower()) for r in app.url_map.iter_rules() if r.rule.startswith('/api/v1')
              for m in r.methods - {'HEAD', 'OPTIONS'}]
    assert len(routes) >= 25
    for path, method in routes:
        assert method in spec['paths'].get(path, {}), f'{method.upper()} {path} is not in openapi.json'
        op = spec['paths'][path][method]
        assert op['summary'] and op['responses']
        params = {p['name'] for p in op['parameters'] if p['in'] == 'path'}
        assert params == set(re.findall(r'{(\w+)}', path))


def test_every_schema_reference_resolves(make_app):
    spec = make_app().test_client().get('/api/v1/openapi.json').get_json()
    refs = set(re.findall(r'#/components/schemas/(\w+)', json.dumps(spec)))
    assert refs and refs <= set(spec['components']['schemas'])
