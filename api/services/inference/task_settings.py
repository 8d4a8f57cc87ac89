"""What a task keeps for testing its LoRAs: <data>/runs/<task-id>/inference.json, beside task.json.

    {'prompts': ['a red fox running', ...],      test prompts of the task
     'images': ['portraits/anna.png', ...],      test images (gallery paths)
     'negative_prompt': None,                    None: Wan's default
     'preview': {...PREVIEW},                    previews queued after each saved epoch
     'best': {'job_id', 'lora', 'epoch', 'marked_at'} or None,
     'revision': 3, 'updated_at': 1763900000.0}

It lives in the task's folder, so it goes where the task goes (deleted with it); written atomically.
"""

import copy
import threading
import time

from ..errors import BadRequest, Conflict
from ..records import clean_temp_files, read_record, write_record

PREVIEW = {
    'enabled': False,         # queue an infer job after each LoRA a training job of this task saves
    'strengths': [1.0],       # LoRA strengths of each preview
    'seed': 42,
    'steps': None,            # None: the variant's default (few on a CPU-only studio)
    'frames': None,
    'width': None,            # None (both): proposed per image at `area`
    'height': None,
    'area': None,
    'guidance': None,
    'shift': None,
    'backend': 'embedded',    # embedded | comfyui
    'device': 'free',         # free: any free GPU now; training: the training job's GPUs, once it frees them
    'enabled_at': None,       # saves before this time are not previewed
    'taehv': None,            # a TAEHV file (model roots) for live previews of every run of the task; None: none
}
EMPTY = {'prompts': [], 'images': [], 'negative_prompt': None, 'preview': PREVIEW, 'best': None, 'revision': 0,
         'updated_at': None}
DEVICES = ('free', 'training')


class TaskInference:
    def __init__(self, paths):
        self.paths = paths
        self._cache = {}
        self._lock = threading.RLock()

    def _file(self, task_id):
        return self.paths.task_dir(task_id) / 'inference.json'

    def _stamp(self, task_id):
        try:
            st = self._file(task_id).stat()
            return st.st_ino, st.st_mtime_ns
        except OSError:
            return None

    def get(self, task_id):
        """The task's record (defaults when it has none); re-read when the file changed or went away."""
        return copy.deepcopy(self._cached(task_id))

    def best(self, task_id):
        """Only the LoRA marked best: the task list asks this of every task on every poll, so it does not
        copy the whole record (prompts, images, preview settings) as get() does, and once the record is
        cached it does not look at the file either (the studio's own writes update the cache)."""
        with self._lock:
            hit = self._cache.get(task_id)
        return copy.deepcopy((hit[1] if hit else self._cached(task_id))['best'])

    def _cached(self, task_id):
        """The cached record itself (callers copy what they hand out)."""
        with self._lock:
            stamp = self._stamp(task_id)
            hit = self._cache.get(task_id)
            if hit is None or hit[0] != stamp:
                if stamp is None and self.paths.task_dir(task_id).is_dir():
                    clean_temp_files(self.paths.task_dir(task_id), 'inference.json')
                rec = (read_record(self._file(task_id)) if stamp else None) or {}
                merged = {**copy.deepcopy(EMPTY), **rec}
                merged['preview'] = {**PREVIEW, **(rec.get('preview') or {})}
                hit = self._cache[task_id] = (stamp, merged)
            return hit[1]

    def update(self, task_id, changes, if_revision=None):
        """Write changes (top-level keys; 'preview' is merged key by key). Values are checked by the caller."""
        with self._lock:
            rec = self.get(task_id)
            if if_revision is not None and if_revision != rec['revision']:
                raise Conflict(f'the test settings of {task_id} changed meanwhile (revision {rec["revision"]}); '
                               f'reload them', field='if_revision')
            for key, value in changes.items():
                if key == 'preview':
                    was = rec['preview']['enabled']
                    rec['preview'] = {**rec['preview'], **value}
                    if rec['preview']['enabled'] and not was:
                        rec['preview']['enabled_at'] = time.time()
                else:
                    rec[key] = value
            rec['revision'] += 1
            rec['updated_at'] = time.time()
            write_record(self._file(task_id), rec)
            self._cache[task_id] = (self._stamp(task_id), rec)
            return copy.deepcopy(rec)


def check_preview(value):
    """The preview table of a PATCH: known keys of the right kinds (ranges are checked with the run settings)."""
    if not isinstance(value, dict):
        raise BadRequest('preview must be an object', field='preview')
    unknown = set(value) - (set(PREVIEW) - {'enabled_at'})
    if unknown:
        raise BadRequest(f'preview: unknown key(s) {", ".join(sorted(unknown))}', field='preview')
    if 'enabled' in value and not isinstance(value['enabled'], bool):
        raise BadRequest('preview.enabled must be true or false', field='preview.enabled')
    if value.get('taehv') is not None and not isinstance(value['taehv'], str):
        raise BadRequest('preview.taehv must be a path or null', field='preview.taehv')
    if value.get('device', 'free') not in DEVICES:
        raise BadRequest(f'preview.device {value["device"]!r} must be one of {", ".join(DEVICES)}', field='preview.device')
    return dict(value)
