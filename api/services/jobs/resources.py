"""A job's device request, checked the same way wherever a job is asked for (tasks, training, captioning,
inference)."""

from ..errors import BadRequest


def check_resources(res):
    """{'gpus': n, 'gpu_ids': [..] or None}, checked; gpu_ids decides the count when given."""
    gpus, ids = res.get('gpus'), res.get('gpu_ids')
    if ids is not None:
        ok = isinstance(ids, list) and ids and len(set(ids)) == len(ids) \
            and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids)
        if not ok:
            raise BadRequest('gpu_ids must be a list of distinct GPU indices (0, 1, ...)', field='gpu_ids')
        gpus = len(ids)
    if gpus is None:
        gpus = 1
    if not isinstance(gpus, int) or isinstance(gpus, bool) or not 1 <= gpus <= 64:
        raise BadRequest('gpus must be a whole number from 1 to 64', field='gpus')
    return {'gpus': gpus, 'gpu_ids': ids}
