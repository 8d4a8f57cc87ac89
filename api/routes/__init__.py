"""One blueprint per area, all under /api/v1 (the index page aside). Further areas (Data studio,
Inference studio) add their blueprint here and their services under api/services/."""

from .accounts import bp as accounts
from .backups import bp as backups
from .buckets import bp as buckets
from .captions import bp as captions
from .datasets import bp as datasets
from .gallery import bp as gallery
from .gpus import bp as gpus
from .inference import bp as inference
from .jobs import bp as jobs
from .models import bp as models
from .queue import bp as queue
from .system import bp as system
from .tasks import bp as tasks
from .uploads import bp as uploads

BLUEPRINTS = [system, tasks, jobs, queue, gpus, models, datasets, uploads, captions, buckets, gallery, inference,
              backups, accounts]
