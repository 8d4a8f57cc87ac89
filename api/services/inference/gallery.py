"""Test images for the Inference studio: folders of images under <data>/gallery/.

    <data>/gallery/<folder>/<image>       an image is named by 'folder/image' everywhere in the API

Uploads are checked by content (Pillow must decode the whole image) before they get their name; a name
already taken becomes 'name (1).png'. Each image's size is read once (cached by size and mtime) and,
for a chosen model variant, the nearest generation size at each trained area is proposed.
"""

import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from models.wan.inference import SIZE_AREAS, SUPPORTED_AREAS, propose_size
from models.wan.variants import VARIANTS
from utils.fsutil import fsync_dir

from ..accounts.acting import claim_folder
from ..data.datasets import place_file
from ..data.media_previews import probe_checked
from ..errors import BadRequest, Conflict, NotFound
from ..filecache import FileCache
from ..paths import inside

IMAGE_EXT = ('.png', '.jpg', '.jpeg', '.webp', '.bmp')
FOLDER_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9 ._()-]{0,63}$')
UNSAFE = re.compile(r'[^A-Za-z0-9 ._()-]+')
MAX_NAME = 120


def check_folder_name(name, field='name'):
    if not isinstance(name, str) or not FOLDER_RE.match(name) or '..' in name or name != name.strip():
        raise BadRequest(f'{field} {name!r}: use 1-64 letters, digits, spaces, ".", "_", "-", "(", ")", '
                         f'starting with a letter or digit', field=field)
    return name


def clean_image_name(name, field='name'):
    """A safe file name for an uploaded image: its base name, odd characters replaced, an image extension."""
    base = Path(str(name or '').replace('\\', '/')).name.strip()
    stem, ext = os.path.splitext(base)
    if ext.lower() not in IMAGE_EXT:
        raise BadRequest(f'{field} {name!r}: not an image file name (use {", ".join(IMAGE_EXT)})', field=field)
    stem = UNSAFE.sub('_', stem).strip(' .') or 'image'
    return stem[:MAX_NAME] + ext.lower()


def proposals(width, height, variant_id):
    """{'480p': [w, h], ...} at the areas the variant supports (all areas when no variant is given)."""
    if variant_id is None:
        areas, multiple = [a for a in SIZE_AREAS if a != 'tiny'], 16
    else:
        areas, multiple = SUPPORTED_AREAS[variant_id], VARIANTS[variant_id].size_multiple
    return {a: list(propose_size(width, height, multiple, a)) for a in areas}


class Gallery:
    def __init__(self, root):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._sizes = FileCache()

    # ---- folders ----------------------------------------------------------------------------
    def _folder(self, name, must_exist=True, field='folder'):
        folder = inside(self.root, check_folder_name(name, field), field)
        if must_exist and not folder.is_dir():
            raise NotFound(f'no gallery folder {name!r}', field=field)
        return folder

    def folder_path(self, name):
        """The folder of an existing gallery folder (NotFound, PathRefused)."""
        return self._folder(name)

    def folders(self):
        out = []
        for d in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith('.')):
            images = [f for f in d.iterdir() if f.suffix.lower() in IMAGE_EXT and not f.name.startswith('.')]
            out.append({'name': d.name, 'images': len(images), 'updated_at': d.stat().st_mtime})
        return out

    def create(self, name):
        folder = self._folder(name, must_exist=False, field='name')
        try:
            folder.mkdir()
        except FileExistsError:
            raise Conflict(f'a gallery folder named {name!r} exists', field='name') from None
        claim_folder(folder)
        return {'name': name, 'images': 0, 'updated_at': folder.stat().st_mtime}

    def rename(self, name, new):
        src, dst = self._folder(name), self._folder(new, must_exist=False, field='name')
        if dst.exists():
            raise Conflict(f'a gallery folder named {new!r} exists', field='name')
        src.rename(dst)
        fsync_dir(self.root)
        return next(f for f in self.folders() if f['name'] == new)

    def delete(self, name, confirm):
        folder = self._folder(name)
        if confirm is not True:
            raise BadRequest(f'deleting gallery folder {name!r} removes its images; repeat with confirm=true',
                             field='confirm')
        gone = self.root / f'.deleted-{name}-{time.time_ns()}'
        folder.rename(gone)                    # one rename: the folder vanishes whole, then is removed
        shutil.rmtree(gone, ignore_errors=True)
        return {'name': name, 'deleted': True}

    # ---- images -----------------------------------------------------------------------------
    def image_path(self, rel, field='image'):
        """The file of 'folder/name', checked to stay in the gallery and to be an image."""
        if not isinstance(rel, str) or rel.count('/') != 1:
            raise BadRequest(f'{field} {rel!r} must be "folder/image.png"', field=field)
        folder, name = rel.split('/')
        path = inside(self._folder(folder, field=field), name, field)
        if path.suffix.lower() not in IMAGE_EXT or not path.is_file():
            raise NotFound(f'no image {rel!r} in the gallery', field=field)
        return path

    def size_of(self, path):
        """(width, height) of a gallery image as shown (EXIF orientation applied)."""
        def read(p):
            info = probe_checked(p, BadRequest, f'{p.parent.name}/{p.name}', 'image')
            return info.width, info.height
        return self._sizes.get(path, read)

    def describe(self, path, variant_id=None):
        st = path.stat()
        try:
            w, h = self.size_of(path)
            proposed, error = proposals(w, h, variant_id), None
        except BadRequest as e:
            w = h = proposed = None
            error = e.message
        return {'name': path.name, 'path': f'{path.parent.name}/{path.name}', 'width': w, 'height': h,
                'size': st.st_size, 'updated_at': st.st_mtime, 'proposed': proposed, 'error': error}

    def images(self, folder, variant_id=None):
        if variant_id is not None and variant_id not in VARIANTS:
            raise BadRequest(f'variant {variant_id!r} is not one of {", ".join(VARIANTS)}', field='variant')
        d = self._folder(folder)
        files = sorted((f for f in d.iterdir() if f.suffix.lower() in IMAGE_EXT and not f.name.startswith('.')),
                       key=lambda f: f.name.lower())
        return {'name': folder, 'variant': variant_id, 'images': [self.describe(f, variant_id) for f in files]}

    def add(self, folder_name, filename, stream):
        """Store an uploaded image after checking that Pillow decodes it; returns its description."""
        folder = self._folder(folder_name)
        name = clean_image_name(filename, 'file')
        fd, tmp = tempfile.mkstemp(prefix='.upload-', suffix=Path(name).suffix, dir=folder)
        try:
            with os.fdopen(fd, 'wb') as f:
                shutil.copyfileobj(stream, f, 1024 * 1024)
                f.flush()
                os.fsync(f.fileno())
            info = probe_checked(tmp, BadRequest, filename, 'file')
            if info.kind != 'image':
                raise BadRequest(f'{filename}: not an image', field='file')
            final = place_file(tmp, folder, name)      # two uploads of one name get two names
        finally:
            Path(tmp).unlink(missing_ok=True)
        return self.describe(final)

    def remove(self, folder, name):
        path = self.image_path(f'{folder}/{name}')
        path.unlink()
        return {'path': f'{folder}/{name}', 'deleted': True}

    def rename_image(self, folder, name, new):
        src = self.image_path(f'{folder}/{name}')
        new = clean_image_name(new)
        if Path(new).suffix != src.suffix.lower():
            raise BadRequest(f'name {new!r}: keep the extension {src.suffix}', field='name')
        dst = src.parent / new
        if dst.exists():
            raise Conflict(f'an image named {new!r} exists in {folder!r}', field='name')
        src.rename(dst)
        return self.describe(dst)
