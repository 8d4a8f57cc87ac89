"""House rules of api/: services never import Flask; every blueprint lives under /api/v1."""

import ast
from pathlib import Path

SERVICES = Path(__file__).resolve().parents[2] / 'api' / 'services'


def test_services_do_not_import_flask():
    for path in SERVICES.rglob('*.py'):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ''] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.split('.')[0] in ('flask', 'werkzeug') for n in names), f'{path.name} imports {names}'


def test_api_routes_live_under_v1(make_app):
    rules = [r.rule for r in make_app().url_map.iter_rules() if r.endpoint != 'static']
    assert all(r.startswith('/api/v1/') or r == '/' for r in rules), rules
