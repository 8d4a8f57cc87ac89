"""Health, public settings, the config schema for form hints, the OpenAPI document, and the index page."""

import time

from flask import Blueprint, current_app, render_template

from ..errors import storage_problem
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
    s = studio()
    fault = s.scheduler.fault
    problem = storage_problem(fault['error']) if fault else None
    problem = problem or storage_problem(s.paths.write_check())
    if problem:
        problem = {k: problem[k] for k in ('code', 'errno', 'path', 'reason', 'message')}
    return {'ok': problem is None, 'time': time.time(), 'scheduler_running': s.scheduler.running, 'storage': problem}


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
