"""ODEO Studio: the Flask app.

    app = create_app({'data_root': '/srv/odeo'})          # settings overrides (see api/settings.py)
    app = create_app({'settings': s, 'gpu_provider': p})  # a prepared Settings, an injected GPU provider

`config` may also hold 'start_scheduler': True (python -m api does); tests leave the thread off and
call `app.extensions['odeo'].scheduler.tick()` themselves.
"""

from flask import Flask

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
    security.install(app, settings.token)
    errors.register(app)
    for bp in BLUEPRINTS:
        app.register_blueprint(bp)
    if start_scheduler:
        app.extensions['odeo'].start()
    return app
