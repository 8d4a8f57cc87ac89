"""The Data studio's operations, one place for the routes to call (no Flask here).

    data = DataService(settings, paths, jobs, tasks, catalog, models)
    data.files('beach')                      # the clip grid: media, caption, bucket or drop reason
    data.set_caption('beach', 'clip.mp4', 'a dog runs on the sand')
    data.trim('beach', 'clip.mp4', 1.0, 4.5); data.split('beach', 'long.mp4', threshold=10, min_length=2)
    data.buckets('beach', settings, options); data.save_config('beach', settings, variant)
    data.queue_captions('beach', {'model_path': '/models/Qwen2.5-VL-7B-Instruct'})

Files are named by their path relative to the dataset folder; every name from a request is resolved and
checked to stay inside the folder, and hidden paths (the studio's .studio/ folder) are refused.
"""

from pathlib import Path

from utils.media import MediaError, MediaInfo, media_kind, probe_many

from ..errors import BadRequest, Conflict, NotFound, PathRefused
from ..jobs.launcher import module_command, register_kind
from ..jobs.store import ACTIVE
from ..paths import inside, resolve_path
from ..training.form import directory_paths, parse
from . import buckets as bucket_views
from . import cache_view, cutting, imports
from .caption_files import CaptionBook
from .captioning import Captioning
from .datasets import media_files
from .media_previews import MediaGate, Previews, browser_plays, remove_previews
from .uploads import UploadStore


class DataService:
    def __init__(self, settings, paths, jobs, tasks, catalog, models):
        s = settings
        self.settings = s
        self.catalog = catalog
        self.models = models
        self.root = paths.datasets
        self.uploads = UploadStore(paths.root / 'uploads', catalog, s.max_upload_bytes, s.upload_chunk_bytes,
                                   s.upload_expiry_s)
        self.previews = Previews(s.max_image_pixels, MediaGate(s.media_slots, s.media_wait_s))
        self.jobs = jobs.store                  # jobs: the jobs area (JobService)
        self.tasks = tasks
        self.data_root = paths.root
        self.captioning = Captioning(paths, jobs.store, jobs.scheduler, jobs.monitor, s)
        register_kind('caption', module_command('api.jobs.caption'), resumable=False, needs_task=False)

    # ---- datasets -------------------------------------------------------------------------------
    def rename(self, name, new_name):
        """Rename the folder; task drafts that read it follow (`retargeted`: their ids)."""
        self.assert_unused(name)
        old = self.catalog.folder(name)
        renamed = self.catalog.rename(name, new_name)
        if renamed['name'] != name:
            renamed['retargeted'] = self.tasks.retarget_dataset(old, Path(renamed['path']))
        return renamed

    def delete(self, name, confirm):
        self.assert_unused(name)
        return self.catalog.delete(name, confirm)

    def assert_unused(self, name):
        """Renaming or deleting a dataset under a queued or running job would break it mid-run (its frozen
        dataset.toml names the folder): refuse, naming the job."""
        folder = self.catalog.folder(name)
        self.captioning.assert_idle(folder.name)
        here = folder.resolve()
        for job in self.jobs.all(states=ACTIVE, kind='train'):
            if any(p == here or here in p.parents for p in job_dataset_dirs(self.data_root / job['run_dir'],
                                                                          self.data_root)):
                raise Conflict(f"dataset {name!r} is used by training job {job['id']} ({job['state']}); "
                               'stop it first', field='dataset')

    # ---- files ----------------------------------------------------------------------------------
    def file_path(self, name, rel):
        folder = self.catalog.folder(name)
        if not isinstance(rel, str) or any(part.startswith('.') for part in rel.replace('\\', '/').split('/')):
            raise PathRefused(f'file {rel!r} is not a file of this dataset', field='file')
        path = inside(folder, rel, 'file')
        if not path.is_file() or media_kind(path) is None:
            raise NotFound(f'no media file {rel!r} in dataset {name!r}', field='file')
        return folder, path

    def default_variant(self):
        model = self.models.default()
        return model['variant']['id'] if model else bucket_views.DEFAULT_VARIANT

    def files(self, name, q=None, options=None):
        """Every media file with its size, probe, caption (text, source, origin), and the bucket(s) it
        trains in or the reason it is dropped under the dataset's saved settings."""
        folder = self.catalog.folder(name)
        view = bucket_views.bucket_view(folder, self.root, None, options, self.default_variant())
        entries, here = {}, folder.resolve()
        for f in view['files']:                # files of other [[directory]] entries are not this dataset's
            p = Path(f['path']).resolve()
            if here in p.parents:
                entries[p.relative_to(here).as_posix()] = f
        if view['issues']:                     # settings that do not validate: list the files without buckets
            probes = probe_many(media_files(folder), cache_file=folder / 'cache' / 'probe.json',
                                max_pixels=self.settings.max_image_pixels)
            for p, info in probes.items():
                ok = isinstance(info, MediaInfo)
                entries[p.name] = {'kind': media_kind(p), 'status': None, 'reason': None if ok else info.reason,
                                   'media': {'width': info.width, 'height': info.height, 'frames': info.frames,
                                             'fps': info.fps, 'duration': info.duration} if ok else None,
                                   'buckets': [], 'clips': 0, 'notes': []}
        book = CaptionBook(folder)
        provenance = book.provenance()
        out = []
        for rel, f in sorted(entries.items()):
            if f['kind'] is None:
                continue
            st = (folder / rel).stat()
            cap = book.read(rel, provenance)
            if q and q.lower() not in rel.lower() and q.lower() not in (cap['text'] or '').lower():
                continue
            out.append({'name': rel, 'kind': f['kind'], 'size': st.st_size, 'mtime': st.st_mtime,
                        'media': f['media'], 'status': f['status'], 'reason': f['reason'], 'buckets': f['buckets'],
                        'clips': f['clips'], 'notes': f['notes'], 'caption': cap['text'], 'caption_source': cap['source'],
                        'caption_origin': cap['origin'], 'caption_error': cap['error'], 'caption_model': cap['model']})
        return {'dataset': folder.name, 'variant': view['variant'], 'settings': view['settings'],
                'has_config': view['has_config'], 'issues': view['issues'], 'totals': view['totals'],
                'steps_per_epoch': view['steps_per_epoch'], 'files': out}

    def file_info(self, name, rel):
        folder, path = self.file_path(name, rel)
        try:
            info = self.previews.probe(path)
        except MediaError as e:
            info, error = None, e.reason
        else:
            error = None
        try:
            playable = browser_plays(path, info) if info else False
        except MediaError:
            playable = False
        st = path.stat()
        return {'name': rel, 'kind': media_kind(path), 'size': st.st_size, 'mtime': st.st_mtime,
                'media': info.to_dict() if info else None, 'error': error, 'playable': playable,
                'caption': CaptionBook(folder).read(rel)}

    def delete_file(self, name, rel, confirm=False):
        folder, path = self.file_path(name, rel)
        if confirm is not True:
            raise BadRequest(f'deleting {rel} removes it and its caption; repeat with confirm=true', field='confirm')
        book = CaptionBook(folder)
        sidecar = book.sidecar(rel)
        remove_previews(path)
        path.unlink()
        sidecar.unlink(missing_ok=True)
        book.forget(rel)
        return {'name': rel, 'deleted': True}

    # ---- previews -------------------------------------------------------------------------------
    def thumbnail(self, name, rel):
        return self.previews.thumbnail(self.file_path(name, rel)[1])

    def strip(self, name, rel, n=8):
        return self.previews.strip(self.file_path(name, rel)[1], n)

    def playable(self, name, rel):
        return self.previews.playable(self.file_path(name, rel)[1])

    # ---- what the latent cache holds ---------------------------------------------------------------
    def cache_items(self, name, variant):
        """The clips cached for `variant`, and the TAEHV files that can decode them."""
        folder = self.catalog.folder(name)
        z = cache_view.VARIANTS[variant].z_dim if variant in cache_view.VARIANTS else None
        return {'name': name, 'variant': variant, 'items': cache_view.cached_items(folder, variant),
                'taehv': [t for t in self.models.taehvs() if t['latent_channels'] == z]}

    def cache_decode(self, name, variant, item, taehv=None, max_side=None):
        """An MP4 of one cached clip decoded by a TAEHV (`taehv`: a path; default the first that fits)."""
        folder = self.catalog.folder(name)
        z = cache_view.VARIANTS[variant].z_dim if variant in cache_view.VARIANTS else None
        if taehv:
            entry = self.models.find_taehv(resolve_path(taehv, self.data_root))
            if entry is None:
                raise NotFound(f'{taehv!r} is not a TAEHV file under the model roots', field='taehv')
        else:
            entry = next((t for t in self.models.taehvs() if t['latent_channels'] == z), None)
        if max_side is not None and not 16 <= max_side <= 4096:
            raise BadRequest(f'max_side = {max_side} must be between 16 and 4096', field='max_side')
        fps = cache_view.VARIANTS[variant].framerate if variant in cache_view.VARIANTS else 16
        return cache_view.decode_item(folder, variant, item, entry, fps, max_side, gate=self.previews.gate)

    # ---- captions -------------------------------------------------------------------------------
    def set_caption(self, name, rel, text, replace_invalid=False):
        folder, _ = self.file_path(name, rel)
        return CaptionBook(folder).write(rel, text, by='human', replace_invalid=replace_invalid)

    def bulk_captions(self, name, op, files=None, q=None, apply=False, **params):
        folder = self.catalog.folder(name)
        names = [f['name'] for f in self.files(name, q=q)['files']]
        if files is not None:
            if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
                raise BadRequest('files must be a list of file names', field='files')
            chosen = set(files)
            names = [n for n in names if n in chosen]
        return CaptionBook(folder).bulk(names, op, apply=apply, **params)

    # ---- trim and split -------------------------------------------------------------------------
    def _copier(self, folder, rel):
        book = CaptionBook(folder)
        return lambda target: book.copy(rel, target.relative_to(folder).as_posix())

    def trim(self, name, rel, start, end):
        folder, path = self.file_path(name, rel)
        return cutting.trim(folder, path, start, end, self._copier(folder, rel))

    def split(self, name, rel, threshold=10.0, min_length=1.0, cuts=None, dry_run=False):
        folder, path = self.file_path(name, rel)
        return cutting.split(folder, path, threshold, min_length, cuts, dry_run, self._copier(folder, rel))

    # ---- buckets and dataset.toml -----------------------------------------------------------------
    def buckets(self, name, settings=None, options=None):
        folder = self.catalog.folder(name)
        return bucket_views.bucket_view(folder, self.root, settings, options, self.default_variant())

    def config(self, name):
        folder = self.catalog.folder(name)
        path = folder / 'dataset.toml'
        text = path.read_text(encoding='utf-8', errors='replace') if path.is_file() else None
        doc = bucket_views.effective_document(folder)
        return {'exists': text is not None, 'path': str(path), 'toml': text,
                'settings': bucket_views.settings_of(doc)}

    def save_config(self, name, settings, variant=None):
        folder = self.catalog.folder(name)
        return bucket_views.save_config(folder, self.root, settings, variant or self.default_variant())

    # ---- imports --------------------------------------------------------------------------------
    def import_media(self, name, path, mode='copy'):
        return imports.import_media(self.catalog.folder(name), path, self.settings.all_import_roots, mode)

    # ---- auto-captioning ------------------------------------------------------------------------
    def queue_captions(self, name, body):
        """Queue a caption job for the dataset; returns its view."""
        folder = self.catalog.folder(name)
        files = [p.name for p in media_files(folder)]
        return self.captioning.view(self.captioning.queue(folder.name, folder, files, body))

    def caption_jobs(self, name):
        folder = self.catalog.folder(name)
        return [self.captioning.view(j) for j in reversed(self.captioning.jobs_of(folder.name))]



def job_dataset_dirs(run_dir: Path, data_root: Path):
    """The folders a run reads: its frozen dataset.toml's directories and masks, and those of its eval
    datasets' TOML files (relative paths against the data root, as the studio resolves them)."""
    def load(path, which='dataset'):
        try:
            return parse(Path(path).read_text(encoding='utf-8'), which)[0] or {}
        except OSError:
            return {}

    docs = [load(run_dir / 'dataset.toml')]
    for entry in load(run_dir / 'config.toml', 'main').get('eval_datasets') or []:
        if isinstance(entry, dict) and isinstance(entry.get('config'), str):
            docs.append(load(resolve_path(entry['config'], data_root)))
    return [resolve_path(value, data_root) for doc in docs for _, _, value in directory_paths(doc)]
