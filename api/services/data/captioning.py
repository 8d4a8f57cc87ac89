"""Queue auto-captioning of a dataset as a `caption` job (api/jobs/caption.py) and follow it.

Caption jobs belong to no training task: their run directories are <data>/runs/captions/<job-id>/ and
their records say task_id 'captions' (a name task ids, <prefix>-<yyyymmdd>-<nn>, never take). The
scheduler starts them on a free GPU (a CPU slot when there is none) like any job; they are stopped
with POST /jobs/<id>/stop and show up in GET /jobs.
"""

from pathlib import Path

from api.jobs.captioners import CaptionerError, check_folder

from ..errors import BadRequest, Conflict, Invalid, PathRefused
from ..jobs.resources import check_resources
from ..jobs.store import ACTIVE, new_job, new_job_id
from ..paths import find_folders, within_any

TASK_ID = 'captions'
OVERWRITE = ('none', 'machine', 'all')
DEFAULT_PROMPT = ('Describe this {kind} for training a video generation model: the main subjects and their '
                  'appearance, what they do, the setting, lighting, colours and camera movement. Write one '
                  'plain paragraph without an introduction such as "The video shows".')
DEFAULT_FRAMES = 4                  # frames sampled per video
DEFAULT_MAX_NEW_TOKENS = 200


def _int(value, name, default, lo, hi):
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise BadRequest(f'{name} must be a whole number from {lo} to {hi}', field=name)
    return value


def caption_request(body, folder: Path, files, model_roots):
    """The job's `caption` section from a request body, checked (model folder, options, files)."""
    model = body.get('model_path')
    if not isinstance(model, str) or not model.strip():
        raise BadRequest('model_path must name a captioning model folder', field='model_path')
    model_path = Path(model).expanduser()
    if not model_path.is_absolute() or not within_any(model_path, model_roots):
        raise PathRefused(f'model_path {model!r} must be an absolute path inside a model root '
                          f'({", ".join(str(r) for r in model_roots)})', field='model_path')
    try:
        check_folder(model_path.resolve())
    except CaptionerError as e:
        raise Invalid(str(e), field='model_path') from None
    overwrite = body.get('overwrite') or 'none'
    if overwrite not in OVERWRITE:
        raise BadRequest(f'overwrite must be one of {", ".join(OVERWRITE)}', field='overwrite')
    prompt = body.get('prompt') or DEFAULT_PROMPT
    if not isinstance(prompt, str) or len(prompt) > 4000:
        raise BadRequest('prompt must be text of at most 4000 characters', field='prompt')
    wanted = body.get('files')
    if wanted is not None:
        if not isinstance(wanted, list) or not all(isinstance(f, str) for f in wanted):
            raise BadRequest('files must be a list of file names of this dataset', field='files')
        missing = sorted(set(wanted) - set(files))
        if missing:
            raise BadRequest(f'not media files of this dataset: {", ".join(missing[:5])}', field='files')
        files = [f for f in files if f in set(wanted)]
    if not files:
        raise Invalid('there is nothing to caption: the dataset has no media files', field='files')
    return {'folder': str(folder), 'model_path': str(model_path.resolve()), 'prompt': prompt, 'overwrite': overwrite,
            'files': files, 'frames': _int(body.get('frames'), 'frames', DEFAULT_FRAMES, 1, 16),
            'max_new_tokens': _int(body.get('max_new_tokens'), 'max_new_tokens', DEFAULT_MAX_NEW_TOKENS, 1, 2048)}


class Captioning:
    def __init__(self, paths, jobs, scheduler, monitor, settings):
        self.paths, self.jobs, self.scheduler, self.monitor = paths, jobs, scheduler, monitor
        self.settings = settings

    def jobs_of(self, dataset=None):
        jobs = self.jobs.all(TASK_ID, kind='caption')
        return [j for j in jobs if dataset is None or j['caption']['dataset'] == dataset]

    def assert_idle(self, dataset):
        active = [j['id'] for j in self.jobs_of(dataset) if j['state'] in ACTIVE]
        if active:
            raise Conflict(f'dataset {dataset!r} has a caption job in progress ({active[0]}); stop it first',
                           field='dataset')

    def queue(self, dataset, folder, files, body):
        caption = {'dataset': dataset, **caption_request(body, folder, files, self.settings.all_model_roots)}
        request = check_resources({'gpus': body.get('gpus') or 1, 'gpu_ids': body.get('gpu_ids')})
        self.scheduler.check_request(request)
        with self.scheduler.lock:
            self.assert_idle(dataset)
            job_id = new_job_id()
            run_dir = self.paths.job_dir(TASK_ID, job_id)
            (run_dir / 'control').mkdir(parents=True)
            job = new_job(job_id, TASK_ID, self.paths.relative(run_dir), request,
                          {'action': 'caption', 'job_id': None, 'checkpoint': None}, kind='caption')
            job['caption'] = caption
            self.scheduler.enqueue(job)
            return job

    def models(self):
        return find_captioners(self.settings.all_model_roots)

    def view(self, job):
        """The job with its caption request (files as a count) and the latest caption progress."""
        state = self.monitor.state(job) if job['attempts'] else None
        progress = dict(state.train) if state and state.train else None
        status = dict(state.status) if state and state.status else None
        req = {k: v for k, v in job['caption'].items() if k != 'files'}
        return {'id': job['id'], 'state': job['state'], 'kind': job['kind'], 'created_at': job['created_at'],
                'finished_at': job['finished_at'], 'message': job['message'], 'request': job['request'],
                'caption': {**req, 'files': len(job['caption']['files'])}, 'status': status, 'progress': progress}


def find_captioners(roots, depth=2):
    """Folders under the model roots whose config.json names a model type that can caption."""
    def captioner(folder):
        try:
            return check_folder(folder)
        except CaptionerError:
            return None

    return [{'name': f.name, 'path': str(f), 'model_type': kind}
            for root in roots for f, kind in find_folders(root, captioner, depth)]
