"""The Inference studio's operations: the LoRAs training runs saved, test runs queued as `infer` jobs,
the results of those jobs for the comparison grid, and what a task keeps for testing (prompts, images,
preview settings, best epoch).

An infer job's job.json carries the whole run in its `infer` key (docs/architecture.md, "infer jobs"):
the model table, the grid rows (LoRAs, or None for the base model), the inputs (prompt + image + size),
strengths and sampling settings. The job process needs nothing else from the studio.
"""

import json
import logging
import re
import time
import tomllib
from pathlib import Path

from models.wan.inference import NEGATIVE_PROMPT, SUPPORTED_AREAS
from models.wan.variants import VARIANTS

from ..errors import BadRequest, Busy, Conflict, Invalid, NotFound
from ..filecache import FileCache
from ..jobs.launcher import module_command, register_kind
from ..jobs.resources import check_resources
from ..jobs.runs import expert_from_name, list_loras
from ..jobs.store import LIVE, new_job, new_job_id
from ..paths import resolve_path
from ..training.form import get_at, parse
from .gallery import Gallery
from .batch import MAX_EVAL_CELLS, batch_rows, eval_command
from .request import (MAX_CELLS, MAX_IMAGES, MAX_PROMPT_CHARS, MAX_PROMPTS, count_cells, defaults, make_input,
                      settings_from, text_list)
from .task_settings import TaskInference, check_preview

log = logging.getLogger(__name__)
MODEL_KEYS = ('ckpt_path', 'transformer_path', 'llm_path')
MANIFEST = 'results.json'
PREVIEW_DIR = 'previews'                 # api/jobs/infer.py writes the live previews there
PREVIEW_TYPES = {'.webp': 'image/webp', '.jpg': 'image/jpeg', '.png': 'image/png'}


def _lora_meta(path):
    from safetensors import safe_open
    try:
        with safe_open(str(path), framework='pt', device='cpu') as f:
            return f.metadata() or {}
    except Exception:       # a file still being written or not safetensors: listed without metadata
        return {}


def _expert_of(meta, path):
    if meta.get('odeo.expert') in ('main', 'high_noise', 'low_noise'):
        return meta['odeo.expert']
    return expert_from_name(path) or 'main'


class InferenceService:
    def __init__(self, paths, settings, jobs, tasks, models):
        self.paths = paths
        self.settings = settings
        self.jobs = jobs.store                  # jobs: the jobs area (JobService)
        self.job_view = jobs.view
        self.monitor = jobs.monitor
        self.scheduler = jobs.scheduler
        self.inventory = jobs.inventory
        self.tasks = tasks
        self.models = models
        self.gallery = Gallery(paths.root / 'gallery')
        self.store = TaskInference(paths)
        self._meta = FileCache()          # LoRA file -> its safetensors metadata
        self._manifests = FileCache()     # a job's results.json -> its contents
        self.preview_errors = {}          # task id -> why its last preview could not be queued
        register_kind('infer', module_command('api.jobs.infer'))
        register_kind('eval', eval_command)           # batch evaluation: one worker per device (api/jobs/evaluate.py)

    # ---- LoRAs saved by training runs ---------------------------------------------------------
    def job_loras(self, job):
        """Complete saves of a training run (every expert file present), oldest first, with epoch and step."""
        run = self.paths.root / job['run_dir']
        state = self.monitor.state(job)
        events = {p: e for p, e in state.artifacts.items() if e.get('kind') == 'lora'}
        out = []
        for save in list_loras(run, state.artifacts):
            try:
                config = json.loads((run / save['name'] / 'adapter_config.json').read_text(encoding='utf-8'))
            except (OSError, ValueError):
                continue                                  # written last: the save is not complete yet
            files = []
            for f in save['files']:
                meta = self._meta.get(run / f['path'], _lora_meta)
                files.append({'path': f['path'], 'size': f['size'], 'expert': _expert_of(meta, f['path']),
                              'variant': meta.get('odeo.variant')})
            wanted = set(config.get('experts') or [])
            if len(wanted) > 1 and not wanted <= {f['expert'] for f in files}:
                continue
            ev = next((events[f['path']] for f in save['files'] if f['path'] in events), {})
            epoch = ev.get('epoch') if ev else (save['number'] if save['kind'] == 'epoch' else None)
            out.append({'id': f'{job["id"]}/{save["name"]}', 'job_id': job['id'], 'task_id': job['task_id'],
                        'run': self.jobs.run_number(job), 'name': save['name'], 'kind': save['kind'], 'number': save['number'], 'epoch': epoch,
                        'step': ev.get('step'), 'saved_at': ev.get('time') or save['created_at'],
                        'created_at': save['created_at'], 'variant': files[0]['variant'], 'files': files})
        return out

    def loras(self, task_id):
        self.tasks.get(task_id)
        best = self.store.get(task_id)['best']
        out = []
        for job in self.jobs.all(task_id, kind='train'):
            for lora in self.job_loras(job):
                lora['best'] = bool(best and best['job_id'] == lora['job_id'] and best['lora'] == lora['name'])
                out.append(lora)
        return out

    def lora(self, ref):
        """A LoRA by reference: {'job_id', 'name'} or 'job-id/epoch3'."""
        if isinstance(ref, str) and ref.count('/') == 1:
            ref = dict(zip(('job_id', 'name'), ref.split('/')))
        if not isinstance(ref, dict) or not isinstance(ref.get('job_id'), str) or not isinstance(ref.get('name'), str):
            raise BadRequest(f'loras: {ref!r} must be {{"job_id", "name"}} or "job-id/epoch3"', field='loras')
        job = self.jobs.get(ref['job_id'])
        found = next((x for x in self.job_loras(job) if x['name'] == ref['name']), None)
        if found is None:
            raise NotFound(f'job {ref["job_id"]} has no complete LoRA {ref["name"]!r}', field='loras')
        return found

    # ---- models ---------------------------------------------------------------------------
    def _absolute(self, table):
        out = {}
        for k in MODEL_KEYS:
            v = table.get(k)
            if isinstance(v, str) and v:
                out[k] = str(resolve_path(v, self.paths.root))
        return out

    def model_of_job(self, job):
        """The [model] table a training run used (its frozen config.toml) and the variant id."""
        path = self.paths.root / job['run_dir'] / 'config.toml'
        try:
            doc = tomllib.loads(path.read_text(encoding='utf-8'))
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise Invalid(f'{path}: cannot read the run\'s config ({e})', field='loras') from None
        return self._with_variant(self._absolute(doc.get('model') or {}), path)

    def model_of_task(self, task_id):
        """The model of the task's newest training run, else of its draft."""
        latest = self.jobs.latest(task_id, kind='train')
        if latest:
            return self.model_of_job(latest)
        doc, err = parse(self.tasks.get(task_id)['toml']['main'], 'main')
        if err:
            raise Invalid(f'the task\'s config does not parse: {err["message"]}', field='model')
        return self._with_variant(self._absolute(get_at(doc, ('model',)) or {}), 'the task draft')

    def _with_variant(self, table, where):
        entry = self.models.find(table.get('ckpt_path', '')) if table.get('ckpt_path') else None
        if entry is None or not entry['variant']:
            why = entry['error'] if entry else 'not a checkpoint folder the studio knows'
            raise Invalid(f'{where}: model.ckpt_path {table.get("ckpt_path")!r}: {why}', field='model')
        return table, entry['variant']['id']

    # ---- queueing runs ----------------------------------------------------------------------
    def _rows(self, refs):
        if refs is None:
            return []
        if not isinstance(refs, list) or len(refs) > 64:
            raise BadRequest('loras must be a list of at most 64 LoRAs', field='loras')
        rows = [self.lora(r) for r in refs]
        return list({r['id']: r for r in rows}.values())

    def prepare(self, task_id, body, batch=False):
        """(spec, request) of a run from a request body; raises with the field at fault. batch: the inputs are
        the rows of a batch evaluation (batch.batch_rows) instead of images x prompts."""
        cfg = self.store.get(task_id)
        rows = self._rows(body.get('loras'))
        with_base = body.get('base', False)
        if not isinstance(with_base, bool):
            raise BadRequest('base must be true or false', field='base')
        if rows:
            models = [self.model_of_job(self.jobs.get(r['job_id'])) for r in rows]
            if len({m[0].get('ckpt_path') for m in models}) > 1:
                raise Invalid('the chosen LoRAs were trained on different base models; compare them in separate runs',
                              field='loras')
            table, variant = models[0]
        else:
            table, variant = self.model_of_task(task_id)
        for r in rows:
            if r['variant'] and r['variant'] != variant:
                raise Invalid(f'LoRA {r["id"]} is for {r["variant"]}, the model is {variant}', field='loras')
        mode = self.inventory.snapshot().mode
        if batch:
            batch = batch_rows(body, VARIANTS[variant].task)
            body = {**body, 'prompts': [batch[0]['prompt']], 'images': [r['image'] for r in batch[:1] if r['image']]}
        s = settings_from(body, variant_id=variant, mode=mode, gallery=self.gallery,
                          prompts=cfg['prompts'], images=cfg['images'])
        if batch:
            fixed = (s['width'], s['height']) if s['width'] else None
            s['inputs'] = [make_input(r['prompt'], r['image'], gallery=self.gallery, variant=VARIANTS[variant],
                                      fixed=fixed, area=s['area']) for r in batch]
            s['prompts'] = list(dict.fromkeys(r['prompt'] for r in batch))
            s['images'] = list(dict.fromkeys(r['image'] for r in batch if r['image']))
        if 'negative_prompt' not in body and cfg['negative_prompt'] is not None:
            s['negative_prompt'] = cfg['negative_prompt']
        total = count_cells(len(rows), s['inputs'], s['strengths'], with_base, MAX_EVAL_CELLS if batch else MAX_CELLS)
        run_rows = [None] if with_base else []
        run_rows += [{'id': r['id'], 'job_id': r['job_id'], 'task_id': r['task_id'], 'name': r['name'],
                      'epoch': r['epoch'], 'step': r['step'],
                      'files': [{'path': str(self.paths.root / self.jobs.get(r['job_id'])['run_dir'] / f['path']),
                                 'expert': f['expert']} for f in r['files']]} for r in rows]
        spec = {'variant': variant, 'model': table, 'loras': run_rows, 'cells': total, **s,
                'preview_taehv': self._taehv_for(cfg['preview'].get('taehv'), variant, quiet=True)}
        if s['backend'] == 'comfyui':
            spec['comfyui'] = self._comfyui(body)
        gpus, ids = body.get('gpus'), body.get('gpu_ids')
        request = check_resources({'gpus': gpus if gpus is not None else 1, 'gpu_ids': ids})
        return spec, request

    def _comfyui(self, body):
        models = body.get('comfyui_models') or {}
        if not isinstance(models, dict) or not all(isinstance(v, str) for v in models.values()):
            raise BadRequest('comfyui_models must map unet/unet_low/clip/vae/clip_vision to file names',
                             field='comfyui_models')
        s = self.settings
        if s.comfyui_loras_dir:
            loras_dir = s.comfyui_loras_dir
        elif s.comfyui_mode == 'managed':                 # our own folder, named in the extra_model_paths we write
            loras_dir = str(self.paths.root / 'comfyui' / 'loras')
            Path(loras_dir).mkdir(parents=True, exist_ok=True)
        else:
            loras_dir = str(Path(s.comfyui_path) / 'models' / 'loras')
        return {'url': s.comfyui_url, 'mode': s.comfyui_mode, 'path': s.comfyui_path,
                'python': s.comfyui_python or s.python, 'loras_dir': loras_dir, 'models': models,
                'model_roots': [str(r) for r in s.all_model_roots]}

    def run(self, task_id, body, origin=None, background=False):
        task = self.tasks.get(task_id)
        if task.get('deleting'):
            raise Conflict(f'task {task_id} is being deleted', field='task_id')
        spec, request = self.prepare(task_id, body)
        self.check_backend(spec['backend'])
        job = self.queue(task_id, spec, request, origin or {'action': 'infer', 'job_id': None, 'checkpoint': None},
                         background)
        return self.job_view(job)

    def evaluate(self, task_id, body):
        """Queue a batch evaluation: an `eval` job making every row with every LoRA and strength, spread over the
        devices it asks for (`gpus`, or CPU slots), one worker each."""
        task = self.tasks.get(task_id)
        if task.get('deleting'):
            raise Conflict(f'task {task_id} is being deleted', field='task_id')
        spec, request = self.prepare(task_id, body, batch=True)
        job = self.queue(task_id, spec, request, {'action': 'eval', 'job_id': None, 'checkpoint': None}, kind='eval')
        return self.job_view(job)

    def queue(self, task_id, spec, request, origin, background=False, kind='infer'):
        self.scheduler.check_request(request)
        with self.scheduler.lock:
            if self.tasks.get(task_id).get('deleting'):
                raise Conflict(f'task {task_id} is being deleted', field='task_id')
            job_id = new_job_id()
            job_dir = self.paths.job_dir(task_id, job_id)
            job_dir.mkdir(parents=True)
            job = new_job(job_id, task_id, self.paths.relative(job_dir), request, origin, kind=kind)
            job['infer'] = spec
            job['background'] = background          # previews never hold up the queue
            job['owner'] = job['owner'] or self.tasks.get(task_id).get('owner')   # previews: the task's owner
            self.scheduler.enqueue(job)
            return job

    # ---- what a task keeps --------------------------------------------------------------------
    def task_settings(self, task_id):
        """The record, plus the model's variant and the settings a run gets by default on this machine."""
        self.tasks.get(task_id)
        rec = self.store.get(task_id)
        try:
            rec['variant'] = self.model_of_task(task_id)[1]
        except Invalid:
            rec['variant'] = None
        mode = self.inventory.snapshot().mode
        rec['defaults'] = {**defaults(rec['variant'], mode), 'fps': VARIANTS[rec['variant']].framerate,
                           'size_multiple': VARIANTS[rec['variant']].size_multiple,
                           'areas': list(SUPPORTED_AREAS[rec['variant']]) + (['tiny'] if mode == 'cpu' else []),
                           'task': VARIANTS[rec['variant']].task, 'negative_prompt': NEGATIVE_PROMPT,
                           'two_experts': VARIANTS[rec['variant']].two_experts,
                           'latent_channels': VARIANTS[rec['variant']].z_dim} if rec['variant'] else None
        rec['preview_error'] = self.preview_errors.get(task_id)
        return rec

    def comfyui_status(self, url=None, mode=None):
        """Whether the ComfyUI backend can be used: the settings' one, or `url` / `mode` being tried out."""
        from .comfyui.client import ComfyClient, ComfyError
        s = self.settings
        mode, url = mode or s.comfyui_mode, url or s.comfyui_url
        out = {'mode': mode, 'url': url, 'path': s.comfyui_path,
               'checkout': (Path(s.comfyui_path) / 'main.py').is_file(), 'reachable': False, 'version': None,
               'error': None}
        if mode == 'managed':
            out['url'] = None
            if not out['checkout']:
                out['error'] = f'{s.comfyui_path}/main.py not found: run `git submodule update --init`'
            return out
        try:
            stats = ComfyClient(url, timeout=3.0).system_stats()
            out.update(reachable=True, version=(stats.get('system') or {}).get('comfyui_version'))
        except ComfyError as e:
            out['error'] = str(e)
        return out

    def check_backend(self, backend):
        """Refuse a run whose backend cannot work now (ComfyUI down, or no checkout to start), naming why."""
        if backend != 'comfyui':
            return
        st = self.comfyui_status()
        if st['mode'] == 'managed' and not st['checkout']:
            raise Busy(f'ComfyUI cannot be started: {st["error"]} (Settings: ComfyUI)', retry_after=60, field='backend')
        if st['mode'] == 'external' and not st['reachable']:
            raise Busy(f'ComfyUI at {st["url"]} is not reachable: {st["error"]}. Start it, or change the ComfyUI '
                       'URL (or choose managed mode) in Settings', retry_after=30, field='backend')

    def patch_settings(self, task_id, body):
        task = self.tasks.get(task_id)
        if task.get('deleting'):
            raise Conflict(f'task {task_id} is being deleted', field='task_id')
        changes = {}
        for key in ('prompts', 'images', 'negative_prompt', 'preview', 'best'):
            if key in body:
                changes[key] = body[key]
        unknown = set(body) - set(changes) - {'if_revision'}
        if unknown:
            raise BadRequest(f'unknown field(s) {", ".join(sorted(unknown))}', field=sorted(unknown)[0])
        if 'preview' in changes:
            changes['preview'] = check_preview(changes['preview'])
        if 'best' in changes:
            changes['best'] = self._best(changes['best'])
        current = self.store.get(task_id)
        merged = {**current, **{k: v for k, v in changes.items() if k != 'preview'},
                  'preview': {**current['preview'], **changes.get('preview', {})}}
        checked = self._check_settings(task_id, merged)
        changes.update({k: checked[k] for k in ('prompts', 'images') if k in changes})
        if 'taehv' in changes.get('preview', {}):
            changes['preview']['taehv'] = merged['preview']['taehv']         # the catalog's absolute path
        self.store.update(task_id, changes, body.get('if_revision'))
        return self.task_settings(task_id)

    def _check_settings(self, task_id, rec):
        """Prompts and images always; the preview settings too when previews are on (as the runs will see them)."""
        prompts = text_list({'prompts': rec['prompts']}, 'prompts', MAX_PROMPTS, MAX_PROMPT_CHARS) or []
        images = text_list({'images': rec['images']}, 'images', MAX_IMAGES) or []
        for image in images:
            self.gallery.image_path(image, 'images')
        if rec['negative_prompt'] is not None and not isinstance(rec['negative_prompt'], str):
            raise BadRequest('negative_prompt must be text or null', field='negative_prompt')
        out = {'prompts': [p.strip() for p in prompts if p.strip()], 'images': list(dict.fromkeys(images))}
        try:
            _, out['variant'] = self.model_of_task(task_id)
        except Invalid:
            out['variant'] = None
        if rec['preview'].get('taehv'):
            rec['preview']['taehv'] = self._taehv_for(rec['preview']['taehv'], out['variant'])
        if rec['preview']['enabled']:
            if out['variant'] is None:
                raise Invalid('previews need the task\'s model: choose a model checkpoint first', field='preview.enabled')
            body = self._preview_body(rec)
            settings_from(body, variant_id=out['variant'], mode=self.inventory.snapshot().mode, gallery=self.gallery)
        return out

    def _taehv_for(self, path, variant, quiet=False):
        """The catalog path of a task's preview TAEHV, checked: a TAEHV file under the model roots whose latent
        channels are the model's. quiet: None instead of an error (a file gone since it was chosen)."""
        if not path:
            return None
        entry = self.models.find_taehv(resolve_path(path, self.paths.root))
        why = None
        if entry is None:
            why = f'preview.taehv {path!r} is not a TAEHV file under the model roots'
        elif variant and entry['latent_channels'] != VARIANTS[variant].z_dim:
            why = (f'preview.taehv {path!r} decodes {entry["latent_channels"]}-channel latents; '
                   f'{variant} makes {VARIANTS[variant].z_dim}-channel ones')
        if why and not quiet:
            raise Invalid(why, field='preview.taehv')
        return None if why else entry['path']

    def _best(self, value):
        if value is None:
            return None
        lora = self.lora(value if isinstance(value, (dict, str)) else None)
        return {'job_id': lora['job_id'], 'lora': lora['name'], 'epoch': lora['epoch'], 'step': lora['step'],
                'marked_at': time.time()}

    def best(self, task_id):
        return self.store.best(task_id)

    @staticmethod
    def _preview_body(rec):
        p = rec['preview']
        body = {k: p[k] for k in ('strengths', 'seed', 'steps', 'frames', 'width', 'height', 'area', 'guidance',
                                  'shift', 'backend') if p.get(k) is not None}
        body.update(prompts=rec['prompts'], images=rec['images'])
        if rec['negative_prompt'] is not None:
            body['negative_prompt'] = rec['negative_prompt']
        return body

    def queue_preview(self, task_id, train_job, lora, rec):
        """One background infer job for a saved LoRA of a training run, with the task's preview settings."""
        body = {**self._preview_body(rec), 'loras': [{'job_id': train_job['id'], 'name': lora['name']}]}
        if rec['preview']['device'] == 'training' and train_job['attempts']:
            devices = train_job['attempts'][-1]['devices']
            body.update(gpus=len(devices), gpu_ids=devices)
        spec, request = self.prepare(task_id, body)
        origin = {'action': 'preview', 'job_id': train_job['id'], 'checkpoint': lora['name']}
        return self.queue(task_id, spec, request, origin, background=True)

    # ---- results ------------------------------------------------------------------------------
    def manifest(self, job):
        try:                                  # written atomically by the job: never seen half-written
            return self._manifests.get(self.paths.root / job['run_dir'] / MANIFEST,
                                       lambda p: json.loads(p.read_text(encoding='utf-8')))
        except (OSError, ValueError):
            return None

    def live_preview(self, job_id, cell):
        """(bytes, mimetype) of the newest live preview of an infer job's cell. Read from the folder, not from
        results.json: the job removes a cell's previous preview as soon as it writes the next one, so the name
        a client last saw may be gone; the newest is always there."""
        job = self.jobs.get(job_id)
        if job['kind'] != 'infer' or not re.fullmatch(r'c\d{3,5}', cell):
            raise NotFound(f'job {job_id} has no cell {cell!r}', field='cell')
        folder = self.paths.root / job['run_dir'] / PREVIEW_DIR
        for _ in range(3):                      # the newest may be replaced between listing and reading it
            found = sorted((int(m[1]), p) for p in folder.glob(f'{cell}_s*.*')
                           if (m := re.fullmatch(rf'{cell}_s(\d+)\.(webp|jpg|png)', p.name)))
            if not found:
                break
            path = found[-1][1]
            try:
                return path.read_bytes(), PREVIEW_TYPES[path.suffix]
            except FileNotFoundError:
                continue
        raise NotFound(f'cell {cell} of job {job_id} has no live preview', field='cell')

    def results(self, task_id):
        """Every infer job of the task and every cell they made, for the comparison grid."""
        self.tasks.get(task_id)
        jobs, cells = [], []
        runs = sorted(self.jobs.all(task_id, kind='infer') + self.jobs.all(task_id, kind='eval'),
                      key=lambda j: j['created_at'])
        for job in runs:
            man = self.manifest(job) or {}
            spec = job.get('infer') or {}
            progress = self.monitor.progress(job) if job['state'] in LIVE else None
            done = [c for c in man.get('cells', []) if c.get('status') == 'done']
            jobs.append({'id': job['id'], 'kind': job.get('kind', 'infer'), 'workers': man.get('workers'),
                         'state': job['state'], 'created_at': job['created_at'],
                         'finished_at': job['finished_at'], 'origin': job['origin'], 'message': job['message'],
                         'backend': spec.get('backend'), 'variant': spec.get('variant'), 'total': spec.get('cells'),
                         'done': len(done), 'failed': sum(1 for c in man.get('cells', []) if c.get('status') == 'failed'),
                         'fraction': progress and progress['fraction'], 'settings': man.get('settings')})
            for c in man.get('cells', []):
                base = f'jobs/{job["id"]}/files/'
                cells.append({**c, 'job_id': job['id'], 'negative_default': c.get('negative_prompt') == NEGATIVE_PROMPT,
                              'video_url': base + c['video'] if c.get('video') else None,
                              'poster_url': base + c['poster'] if c.get('poster') else None,
                              'video_fast_url': base + c['video_fast'] if c.get('video_fast') else None,
                              'preview_url': (f'jobs/{job["id"]}/previews/{c["id"]}?step={c.get("preview_step")}'
                                              if c.get('preview') else None)})
        return {'task_id': task_id, 'best': self.best(task_id), 'jobs': jobs, 'cells': cells}
