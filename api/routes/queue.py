"""The job queue: order and reordering."""

from flask import Blueprint

from ..http import body, doc, field, studio
from ..services.errors import BadRequest

bp = Blueprint('queue', __name__, url_prefix='/api/v1')
WHERE = {'up': ('by', -1), 'down': ('by', 1), 'top': ('to', 0), 'bottom': ('to', 10 ** 9)}


@bp.get('/queue')
@doc('Queued jobs in order, with why each is waiting', response='Queue')
def get_queue():
    return studio().job_service.queue_view()


@bp.post('/queue/<job_id>/move')
@doc('Move a queued job: {"to": position} or {"by": places} or {"where": "up"|"down"|"top"|"bottom"}',
     body='QueueMove', response='Queue')
def move(job_id):
    d, jobs = body(), studio().job_service
    where = field(d, 'where', str)
    if where is not None:
        if where not in WHERE:
            raise BadRequest(f'where must be one of {", ".join(WHERE)}', field='where')
        kind, n = WHERE[where]
        return jobs.move(job_id, **{kind: n})
    return jobs.move(job_id, to=field(d, 'to', int), by=field(d, 'by', int))
