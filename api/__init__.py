"""ODEO Studio: the Flask app.

    app = create_app({'data_root': '/srv/odeo'})          # settings overrides (see api/settings.py)
    app = create_app({'settings': s, 'gpu_provider': p})  # a prepared Settings, an injected GPU provider

`config` may also hold 'start_scheduler': True (python -m api does); tests leave the thread off and
call `app.extensions['odeo'].scheduler.tick()` themselves. With auth = 'accounts' the app has users,
sessions and an audit log (api/accounts.py, app.extensions['odeo_accounts']).
"""

import time

from flask import Flask

from . import accounts, errors, security
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
    auth = accounts.install(app, settings) if settings.auth == 'accounts' else None
    security.install(app, settings, identify=auth.identify if auth else None)
    if auth:
        accounts.guard(app, auth)
    errors.register(app)
    for bp in BLUEPRINTS:
        app.register_blueprint(bp)
    app.wsgi_app = ServerTiming(app.wsgi_app)
    if start_scheduler:
        app.extensions['odeo'].start()
    return app


class ServerTiming:
    """`Server-Timing: app;dur=<ms>, cpu;dur=<ms>` on every response. app: the wall time the studio spent on
    the request, from the WSGI call to the status line (routing, checks, the view, error handlers; not the
    network, not the waiting for a worker thread, and not the streaming of a file body after the headers).
    cpu: the CPU time the request's thread used meanwhile; app minus cpu is time spent waiting, for the GIL,
    for a core other processes hold (training jobs), or for the disk."""

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        started, cpu = time.perf_counter(), time.thread_time()

        def timed(status, headers, exc_info=None):
            wall = time.perf_counter() - started
            used = min(time.thread_time() - cpu, wall)      # the two clocks tick apart by a few microseconds
            headers.append(('Server-Timing', f'app;dur={wall * 1000:.2f}, cpu;dur={used * 1000:.2f}'))
            return start_response(status, headers, exc_info)
        return self.wsgi_app(environ, timed)
