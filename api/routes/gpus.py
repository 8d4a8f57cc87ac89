"""GPU panel: devices, memory, load, and which job holds each; the compute targets tasks may choose."""

from flask import Blueprint

from ..http import doc, studio

bp = Blueprint('gpus', __name__, url_prefix='/api/v1')


@bp.get('/gpus')
@doc('GPU inventory (cached 2 s); mode "cpu" with CPU slots when the machine has no GPU', response='Gpus')
def gpus():
    return studio().job_service.gpu_view()


@bp.get('/targets')
@doc('Compute targets tasks may choose (local, slurm, hosts) and what each offers', response='Targets')
def targets():
    return studio().job_service.targets_view()
