"""Datasets: folders under <data>/datasets/<name>/ (the Data studio adds uploads and captioning)."""

from pathlib import Path

from .errors import NotFound
from .paths import inside

IMAGE_EXT = {'.jpg', '.jpeg', '.png', '.webp', '.bmp'}
VIDEO_EXT = {'.mp4', '.mov', '.webm', '.mkv', '.avi', '.gif'}


def describe(folder: Path):
    counts = {'images': 0, 'videos': 0, 'captions': 0}
    for f in folder.iterdir():
        ext = f.suffix.lower()
        if ext in IMAGE_EXT:
            counts['images'] += 1
        elif ext in VIDEO_EXT:
            counts['videos'] += 1
        elif ext == '.txt':
            counts['captions'] += 1
    return {'name': folder.name, 'path': str(folder), **counts}


class DatasetCatalog:
    def __init__(self, root):
        self.root = Path(root)

    def list(self):
        if not self.root.is_dir():
            return []
        return [describe(d) for d in sorted(self.root.iterdir()) if d.is_dir() and not d.name.startswith('.')]

    def get(self, name):
        folder = inside(self.root, name, 'dataset')
        if not folder.is_dir():
            raise NotFound(f'no dataset {name!r} in {self.root}', field='dataset')
        return describe(folder)
