"""GPU panel: devices, memory, load, and which job holds each."""

from flask import Blueprint

from ..http import doc, studio

bp = Blueprint('gpus', __name__, url_prefix='/api/v1')


@bp.get('/gpus')
@doc('GPU inventory (cached 2 s); mode "cpu" with CPU slots when the machine has no GPU', response='Gpus')
def gpus():
    return studio().job_service.gpu_view()
