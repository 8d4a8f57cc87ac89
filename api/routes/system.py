"""Health, public settings, the config schema for form hints, the OpenAPI document, and the index page."""

from flask import Blueprint, current_app, render_template

from ..http import doc, studio
from ..openapi.spec import build_spec
from ..settings import public_view

bp = Blueprint('system', __name__)


@bp.get('/')
def index():
    return render_template('index.html')


@bp.get('/api/v1/health')
@doc('Liveness: the studio answers, its scheduler runs, and the data root takes writes', response='Health')
def health():
    return studio().health()


@bp.get('/api/v1/settings')
@doc('The settings in force (never the token)', response='Settings')
def settings():
    return public_view(studio().settings)


@bp.get('/api/v1/schema/config')
@doc('Form fields (name -> TOML key) and every config key with default and doc, for form hints', response='ConfigSchema')
def config_schema():
    from utils.config import describe_keys
    return {'form_fields': studio().training.form_schema(), 'keys': describe_keys()}


@bp.get('/api/v1/openapi.json')
@doc('This API described as OpenAPI 3', response='OpenApi')
def openapi():
    return build_spec(current_app)
