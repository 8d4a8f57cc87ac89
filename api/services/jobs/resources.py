"""A job's device request, checked the same way wherever a job is asked for (tasks, training, captioning,
inference)."""

from ..errors import BadRequest


TARGETS = ('local', 'slurm', 'hosts')
SLURM_KEYS = {'partition': str, 'account': str, 'qos': str, 'time_limit': str, 'gpus_per_node': int,
              'sbatch_options': list}


def _check_target(res):
    """target, nodes and the task's own Slurm options, when a target other than this machine is asked for."""
    target, nodes = res.get('target') or 'local', 1 if res.get('nodes') is None else res.get('nodes')
    if target not in TARGETS:
        raise BadRequest(f'target must be one of {", ".join(TARGETS)}', field='target')
    if not isinstance(nodes, int) or isinstance(nodes, bool) or not 1 <= nodes <= 1024:
        raise BadRequest('nodes must be a whole number from 1 to 1024', field='nodes')
    slurm = res.get('slurm') or {}
    if not isinstance(slurm, dict) or any(k not in SLURM_KEYS or not isinstance(v, (SLURM_KEYS[k], type(None)))
                                          for k, v in slurm.items()):
        raise BadRequest(f'slurm must be an object of {", ".join(SLURM_KEYS)}', field='slurm')
    if any(not isinstance(o, str) or '\n' in o for o in slurm.get('sbatch_options') or []):
        raise BadRequest('slurm.sbatch_options must be options on one line each', field='slurm')
    if target == 'local' and nodes == 1:
        return {}
    return {'target': target, 'nodes': nodes, **({'slurm': slurm} if slurm and target == 'slurm' else {})}


def check_resources(res):
    """{'gpus': n, 'gpu_ids': [..] or None} (+ target, nodes, slurm off this machine), checked; gpu_ids decides
    the count when given. gpus is per node."""
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
    where = _check_target(res)
    if where and ids is not None:
        raise BadRequest('gpu_ids name GPUs of this machine; off it, ask for a number of gpus', field='gpu_ids')
    return {'gpus': gpus, 'gpu_ids': ids, **where}
