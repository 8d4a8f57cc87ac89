"""Previews during training: after a training job saves a LoRA, queue one `infer` job for it.

Runs on every scheduler tick (under its lock). For each task with previews on, every complete save of
each of its training runs made after previews were switched on gets one background infer job, whose
origin is {'action': 'preview', 'job_id': <training job>, 'checkpoint': 'epoch3'}. Which saves already
have theirs is read from the job records themselves, so a studio restart never queues one twice.

Where it runs (the task's preview.device): 'free' (any free GPU now, so previews appear while training
goes on) or 'training' (the training job's own GPUs: it waits in the queue, without holding up other
jobs, until training frees them).
"""

import logging

from ..errors import StudioError

log = logging.getLogger(__name__)


class PreviewWatcher:
    def __init__(self, inference, jobs, tasks):
        self.inference = inference
        self.jobs = jobs
        self.tasks = tasks
        self.errors = inference.preview_errors       # task id -> why its last preview could not be queued

    def queued(self, task_id):
        """(training job id, save name) of every preview job the task has."""
        return {(j['origin'].get('job_id'), j['origin'].get('checkpoint'))
                for j in self.jobs.all(task_id, kind='infer') if (j.get('origin') or {}).get('action') == 'preview'}

    def tick(self):
        for task in self.tasks.all():
            if task.get('deleting'):
                continue
            rec = self.inference.store.get(task['id'])
            if not rec['preview']['enabled']:
                continue
            since = rec['preview']['enabled_at'] or 0.0
            done = self.queued(task['id'])
            for train in self.jobs.all(task['id'], kind='train'):
                if (train.get('finished_at') or since) < since:
                    continue        # ended before previews were on: all its saves are older (no disk reads per tick)
                for lora in self.inference.job_loras(train):
                    if (train['id'], lora['name']) in done or (lora['saved_at'] or 0.0) < since:
                        continue
                    self._queue(task['id'], train, lora, rec)

    def _queue(self, task_id, train, lora, rec):
        try:
            job = self.inference.queue_preview(task_id, train, lora, rec)
        except StudioError as e:
            if self.errors.get(task_id) != e.message:
                log.warning('preview of %s/%s not queued: %s', train['id'], lora['name'], e.message)
            self.errors[task_id] = e.message
            return
        self.errors.pop(task_id, None)
        log.info('queued preview job %s for %s/%s', job['id'], train['id'], lora['name'])
