"""ODEO Studio: the Flask app.

    app = create_app({'data_root': '/srv/odeo'})          # settings overrides (see api/settings.py)
    app = create_app({'settings': s, 'gpu_provider': p})  # a prepared Settings, an injected GPU provider

`config` may also hold 'start_scheduler': True (python -m api does); tests leave the thread off and
call `app.extensions['odeo'].scheduler.tick()` themselves.
"""

import time

from flask import Flask, g

from . import errors, security
from .routes import BLUEPRINTS
from .services.studio import Studio
from .settings import load_settings


def create_app(config=None):
    config = dict(config or {})
    provider = config.pop('gpu_provider', None)
    start_scheduler = config.pop('start_scheduler', False)
    settings = config.pop('settings', None) or load_settings(config)
    app = Flask(__name__)
    app.config['MAX_CONTENT_LENGTH'] = settings.max_request_bytes
    app.json.sort_keys = False
    app.url_map.merge_slashes = False          # '//etc' stays an absolute path, refused, not redirected
    app.extensions['odeo'] = Studio(settings, gpu_provider=provider)
    app.extensions['odeo_settings'] = settings
    _server_timing(app)
    security.install(app, settings.token)
    errors.register(app)
    for bp in BLUEPRINTS:
        app.register_blueprint(bp)
    if start_scheduler:
        app.extensions['odeo'].start()
    return app


def _server_timing(app):
    """`Server-Timing: app;dur=<ms>` on every response: what the studio itself spent on the request."""
    @app.before_request
    def started():
        g.started = time.perf_counter()

    @app.after_request
    def timed(response):
        if 'started' in g:
            response.headers['Server-Timing'] = f'app;dur={(time.perf_counter() - g.started) * 1000:.2f}'
        return response
