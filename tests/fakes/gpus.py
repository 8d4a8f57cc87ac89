"""A GPU provider for tests: the GPUs and memory use a test wants, changeable while the studio runs."""

from api.services.jobs.gpus import Device


class FakeGpus:
    name = 'fake'

    def __init__(self, count=8, total_gib=80.0):
        self.total = total_gib
        self.used = [0.0] * count

    def devices(self):
        return [Device(i, 'Fake A100 80GB', self.total, used, 0.0, 30.0) for i, used in enumerate(self.used)]
