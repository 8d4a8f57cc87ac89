"""The studio's services wired together from Settings: the jobs area first, then the area services that
queue jobs through it (training, data, inference, models), each given what it needs.

    studio = Studio(settings)                       # loads records, re-attaches to running jobs
    studio.start()                                  # the scheduler thread (python -m api does this)
    studio.training.start('wan-20261123-01')        # validates, freezes the config, queues a job

Tests pass `gpu_provider=` (any object with `name` and `devices()`) to fake a machine's GPUs.
"""

import shutil
import time

from .backups.service import BackupService
from .data.datasets import DatasetCatalog
from .data.service import DataService
from .errors import storage_problem
from .inference.previews import PreviewWatcher
from .inference.service import InferenceService
from .jobs.gpus import GpuInventory
from .jobs.monitor import JobMonitor
from .jobs.ports import PortAllocator
from .jobs.queue import JobQueue
from .jobs.scheduler import Scheduler
from .jobs.service import JobService
from .jobs.store import JobStore
from .paths import Paths
from .models.catalog import ModelCatalog
from .models.service import ModelService
from .training.service import TrainingService
from .system.resources import ResourceSampler
from .system.service import SettingsService
from .training.tasks import TaskService


class Studio:
    def __init__(self, settings, gpu_provider=None):
        self.settings = settings
        self.paths = Paths(settings.data_root)
        self.paths.make()
        for leftover in self.paths.trash.iterdir():       # deletions a crash interrupted
            shutil.rmtree(leftover, ignore_errors=True)
        self.models = ModelCatalog(settings.all_model_roots)
        self.datasets = DatasetCatalog(self.paths.datasets)
        self.inventory = GpuInventory(settings.gpu_backend, gpu_provider, settings.cpu_slots, settings.gpu_cache_s)
        self.tasks = TaskService(self.paths, settings, self.models, self.datasets, self.inventory)
        self.tasks.load()
        self.jobs = JobStore(self.paths)
        self.jobs.load()
        self.queue = JobQueue(self.paths.queue_file)
        self.monitor = JobMonitor(self.paths)
        self.ports = PortAllocator(*settings.port_range)
        self.scheduler = Scheduler(settings, self.paths, self.jobs, self.queue, self.tasks, self.inventory,
                                   self.monitor, self.ports)
        self.job_service = JobService(settings, self.paths, self.jobs, self.queue, self.monitor, self.inventory,
                                      self.scheduler, self.tasks)
        # each area service registers its job kinds in its constructor, before recover() reads the records
        self.inference = InferenceService(self.paths, settings, self.job_service, self.tasks, self.models)
        self.training = TrainingService(settings, self.paths, self.job_service, self.tasks, self.models,
                                        best_lora=self.inference.best)
        self.data = DataService(settings, self.paths, self.job_service, self.tasks, self.datasets, self.models)
        self.model_service = ModelService(settings, self.paths, self.job_service, self.tasks, self.models)
        self.previews = PreviewWatcher(self.inference, self.jobs, self.tasks)
        self.scheduler.hooks.append(self.previews.tick)
        self.scheduler.recover()
        self.backups = BackupService(settings, self.paths)
        self.system = SettingsService(settings, self.models)
        self.resources = ResourceSampler(self.inventory, settings.resource_sample_s, settings.resource_keep)

    def start(self):
        self.scheduler.start()
        self.backups.start()
        self.resources.start()

    def shutdown(self):
        self.resources.shutdown()
        self.backups.shutdown()
        self.scheduler.shutdown()

    def health(self):
        """Liveness: the scheduler runs and the data root takes writes (the scheduler's last storage error, else a
        small write-and-sync probe); `storage` names the path and the reason when it does not."""
        fault = self.scheduler.fault
        problem = (storage_problem(fault['error']) if fault else None) or storage_problem(self.paths.write_check())
        if problem:
            problem = {k: problem[k] for k in ('code', 'errno', 'path', 'reason', 'message')}
        return {'ok': problem is None, 'time': time.time(), 'scheduler_running': self.scheduler.running,
                'storage': problem}

    # ---- the jobs area's views, for callers that hold the studio (tests, tools) -------------------
    def queue_view(self):
        return self.job_service.queue_view()

    def artifacts(self, job):
        return self.job_service.artifacts(job)

    def run_dir(self, job):
        return self.job_service.run_dir(job)
