"""GPU panel: devices, memory, load, and which job holds each; their recent history; a run's estimate; the compute
targets tasks may choose."""

from flask import Blueprint, request

from ..http import body, doc, studio
from ..services.errors import BadRequest
from ..services.training.estimate import estimate

bp = Blueprint('gpus', __name__, url_prefix='/api/v1')


@bp.get('/gpus')
@doc('GPU inventory (cached 2 s); mode "cpu" with CPU slots when the machine has no GPU', response='Gpus')
def gpus():
    return studio().job_service.gpu_view()


@bp.get('/targets')
@doc('Compute targets tasks may choose (local, slurm, hosts) and what each offers', response='Targets')
def targets():
    return studio().job_service.targets_view()


@bp.get('/resources')
@doc('Recent GPU (utilisation, memory, temperature) and CPU / RAM samples, kept in memory; after=<t> for newer ones',
     response='Resources', query={'after': 'number'})
def resources():
    after = request.args.get('after')
    try:
        after = float(after) if after else None
    except ValueError:
        raise BadRequest('after must be a time in seconds', field='after') from None
    return studio().resources.history(after)


@bp.post('/estimate')
@doc('Estimated GPU memory and time per epoch of a LoRA run (a formula, see docs/performance.md)',
     body='EstimateRequest', response='Estimate')
def run_estimate():
    data = body()
    devices = studio().inventory.snapshot().devices
    gpu_name = data.get('gpu_name') or (devices[0].name if devices and devices[0].memory_total_gib else None)
    out = estimate(data, gpu_name=gpu_name)
    out['gpu_memory_gib'] = max((d.memory_total_gib or 0 for d in devices), default=0) or None
    return out
