"""Health, settings (shown, and the editable ones changed), the config schema for form hints, the OpenAPI
document, and the index page."""

from flask import Blueprint, current_app, render_template

from ..http import body, doc, studio
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


@bp.get('/api/v1/settings/editable')
@doc('The settings the Settings page may change, where they are saved, and those the environment fixes',
     response='EditableSettings')
def editable_settings():
    return studio().system.view()


@bp.patch('/api/v1/settings')
@doc('Change editable settings: checked (422 naming the field), written to the settings file keeping its '
     'comments, in force at once; 409 for one an ODEO_* variable sets', body='SettingsChange', response='EditableSettings')
def change_settings():
    return studio().system.update(body())


@bp.post('/api/v1/settings/comfyui/test')
@doc('Try a ComfyUI URL (or managed mode) without saving it', body='ComfyTest', response='ComfyStatus')
def test_comfyui():
    data = body()
    url, mode = data.get('comfyui_url'), data.get('comfyui_mode')
    changes = {k: v for k, v in (('comfyui_url', url), ('comfyui_mode', mode)) if v is not None}
    if changes:
        from ..settings import SettingsError, check_changes
        from ..services.errors import Invalid
        try:
            check_changes(changes)
        except SettingsError as e:
            raise Invalid(str(e), field=e.field) from None
    return studio().inference.comfyui_status(url=url, mode=mode)


@bp.get('/api/v1/schema/config')
@doc('Form fields (name -> TOML key) and every config key with default and doc, for form hints', response='ConfigSchema')
def config_schema():
    from utils.config import describe_keys
    return {'form_fields': studio().training.form_schema(), 'keys': describe_keys()}


@bp.get('/api/v1/openapi.json')
@doc('This API described as OpenAPI 3', response='OpenApi')
def openapi():
    return build_spec(current_app)
