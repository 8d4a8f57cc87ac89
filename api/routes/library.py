"""Inputs a task can use: model checkpoints found under the model roots (datasets: routes/datasets.py)."""

from flask import Blueprint

from ..http import doc, studio

bp = Blueprint('library', __name__, url_prefix='/api/v1')


@bp.get('/models')
@doc('Checkpoints under the model roots, with detected variant', response='ModelList')
def models():
    s = studio()
    return {'roots': [str(r) for r in s.settings.all_model_roots], 'models': s.models.list()}
