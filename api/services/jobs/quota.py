"""The per-user device limit (setting `max_gpus_per_user`, accounts mode): a queued job whose owner's
running jobs already hold so many devices that it would pass the limit stays queued, and says why. It
holds up nobody else, even under the strict policy (one user's limit must not become everyone's wait).
Jobs without an owner, device-free jobs and Slurm jobs (the cluster keeps its own limits) are not counted."""

from .store import LIVE
from .targets import target_of


def wanted(request):
    return len(request.get('gpu_ids') or []) or request.get('gpus') or 0


def held_by(jobs, owner):
    return sum(len(j['attempts'][-1]['devices']) for j in jobs.all(states=LIVE)
               if j.get('owner') == owner and j['attempts'] and target_of(j) != 'slurm')


def user_limit(settings, jobs, job):
    """(why the job waits, whether it can never start) or (None, False)."""
    limit, owner, want = settings.max_gpus_per_user, job.get('owner'), wanted(job['request'])
    if not limit or owner is None or not want or target_of(job) == 'slurm':
        return None, False
    if want > limit:
        return f'asks for {want} GPUs; one user may hold at most {limit} (max_gpus_per_user)', True
    held = held_by(jobs, owner)
    if held + want > limit:
        return f'user {owner} holds {held} of {limit} GPUs', False
    return None, False
