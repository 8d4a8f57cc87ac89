"""Captions in a dataset folder: read them as the trainer does, edit sidecars, bulk changes, provenance.

    book = CaptionBook(folder)
    book.read('clip.mp4')        # {'text', 'source', 'origin': human|machine|table|none, 'error'}
    book.write('clip.mp4', 'a red ball', by='human')       # clip.txt, atomically, UTF-8
    book.bulk([...files], op='prefix', text='sks, ', apply=False)   # preview: how many would change

What trains is decided by utils.captions (metadata table > captions.json > sidecar .txt); the studio
edits sidecars only, and refuses to edit a caption that a table supplies (the edit would not train).

Provenance: <dataset>/.studio/caption_origin.json remembers captions a model wrote, with a hash of the
text. A caption is `machine` while its text still has that hash; a caption with no entry, or one a
person changed since (in the studio or any editor), is `human`, which auto-captioning leaves alone
unless asked to overwrite. Read-modify-write of that file is serialised across processes with flock,
because the caption job (a separate process) and the studio both write it.
"""

import fcntl
import hashlib
import json
import time
from contextlib import contextmanager
from pathlib import Path

import regex

from utils.captions import CaptionError, find_captions, load_sources
from utils.fsutil import atomic_write_json, atomic_write_text

from ..errors import BadRequest, Conflict, Invalid
from .datasets import STUDIO_DIR

PROVENANCE = 'caption_origin.json'
PREVIEW_ROWS = 20                   # before/after pairs a bulk preview returns
MAX_CAPTION = 20000                 # characters
REGEX_BUDGET_S = 2.0                # most time a bulk find-and-replace may spend matching, over all captions


def text_hash(text):
    return hashlib.sha256(text.strip().encode('utf-8')).hexdigest()[:32]


class CaptionSkipped(Exception):
    """A conditional write backed off; the message says why."""


class CaptionBook:
    def __init__(self, folder):
        self.folder = Path(folder)
        self.sources = load_sources(self.folder)
        self.provenance_path = self.folder / STUDIO_DIR / PROVENANCE

    # ---- provenance -----------------------------------------------------------------------------
    @contextmanager
    def _locked(self):
        self.provenance_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.provenance_path.with_suffix('.lock'), 'a') as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def provenance(self):
        try:
            data = json.loads(self.provenance_path.read_text(encoding='utf-8'))
            return data.get('files', {}) if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _set_provenance(self, name, entry):
        """Record (or with None forget) who wrote a caption; the caller holds the lock."""
        files = self.provenance()
        if entry is None:
            files.pop(name, None)
        else:
            files[name] = entry
        atomic_write_json(self.provenance_path, {'version': 1, 'files': files}, durable=False)

    # ---- reading --------------------------------------------------------------------------------
    def sidecar(self, name):
        return (self.folder / name).with_suffix('.txt')

    def read(self, name, provenance=None):
        """What trains for this file: text, the source it comes from, and who wrote it."""
        provenance = self.provenance() if provenance is None else provenance
        out = {'text': None, 'source': None, 'origin': 'none', 'error': None, 'model': None}
        try:
            captions, source = find_captions(self.sources, self.folder / name)
        except CaptionError as e:
            out.update(source=self.sidecar(name).name, error=f'{self.sidecar(name).name} {e}', origin='human')
            return out
        if captions is None:
            return out
        text = captions[0]
        out.update(text=text, source=source)
        if source != self.sidecar(name).name:
            out['origin'] = 'table'
        else:
            entry = provenance.get(name)
            machine = entry and entry.get('hash') == text_hash(text)
            out['origin'] = 'machine' if machine else ('human' if text.strip() else 'none')
            out['model'] = entry.get('model') if machine else None
        return out

    # ---- writing --------------------------------------------------------------------------------
    def write(self, name, text, by='human', model=None, replace_invalid=False, unless=None):
        """Save the sidecar of `name` (atomically, UTF-8) and record who wrote it. Check, write and record
        happen under the provenance lock, so a caption job and a person never interleave; `unless`
        (current state -> reason or None) lets a writer back off with CaptionSkipped(reason)."""
        if not isinstance(text, str) or len(text) > MAX_CAPTION:
            raise BadRequest(f'text must be a caption of at most {MAX_CAPTION} characters', field='text')
        with self._locked():
            current = self.read(name)
            if current['origin'] == 'table':
                raise Conflict(f'the caption of {name} comes from {current["source"]}, which takes precedence over '
                               f'{self.sidecar(name).name}; edit {current["source"]} instead', field='text')
            if current['error'] and not replace_invalid:
                raise Conflict(f'{current["error"]}; saving would replace that file: repeat with replace_invalid '
                               f'to overwrite it', field='text')
            if unless and (why := unless(current)):
                raise CaptionSkipped(why)
            text = text.strip()
            atomic_write_text(self.sidecar(name), text + '\n' if text else '')
            machine = {'by': 'machine', 'model': model, 'at': time.time(), 'hash': text_hash(text)}
            self._set_provenance(name, machine if by == 'machine' else None)
        return self.read(name)

    def copy(self, src_name, dst_name):
        """Give a new clip (cut from src) the caption of src, with the same provenance."""
        cap = self.read(src_name)
        if cap['text'] is not None:
            self.write(dst_name, cap['text'], by='machine' if cap['origin'] == 'machine' else 'human', model=cap['model'])

    def forget(self, name):
        with self._locked():
            self._set_provenance(name, None)

    # ---- bulk -----------------------------------------------------------------------------------
    def bulk(self, names, op, text='', find='', replace='', regex=False, case=True, apply=False):
        """Prefix / suffix / find-and-replace over the sidecar captions of `names`. Returns how many
        change, a preview of the first ones, and the files skipped with why; writes only when `apply`."""
        change = _operation(op, text, find, replace, regex, case, time.monotonic() + REGEX_BUDGET_S)
        provenance = self.provenance()
        changed, skipped, preview = [], [], []
        for name in names:
            cap = self.read(name, provenance)
            if cap['origin'] == 'table' or cap['error'] or cap['text'] is None:
                why = cap['error'] or ('no caption' if cap['text'] is None else f'caption comes from {cap["source"]}')
                skipped.append({'file': name, 'reason': why})
                continue
            after = change(cap['text'])
            if after == cap['text']:
                continue
            changed.append(name)
            if len(preview) < PREVIEW_ROWS:
                preview.append({'file': name, 'before': cap['text'], 'after': after})
            if apply:
                self.write(name, after, by='human')        # a person's edit: auto-captioning keeps it
        return {'op': op, 'matched': len(changed), 'changed': len(changed) if apply else 0, 'applied': apply,
                'preview': preview, 'skipped': skipped, 'files': changed}


def _operation(op, text, find, replace, is_regex, case, deadline):
    for name, value in (('text', text), ('find', find), ('replace', replace)):
        if not isinstance(value, str):
            raise BadRequest(f'{name} must be text', field=name)
    if op == 'prefix':
        return lambda s: s if s.startswith(text) else text + s
    if op == 'suffix':
        return lambda s: s if s.endswith(text) else s + text
    if op == 'replace':
        if not find:
            raise BadRequest('find must not be empty', field='find')
        flags = 0 if case else regex.IGNORECASE
        try:
            pattern = regex.compile(find if is_regex else regex.escape(find), flags)
        except regex.error as e:
            raise BadRequest(f'find is not a valid regular expression: {e}', field='find') from None
        repl = replace if is_regex else replace.replace('\\', '\\\\')

        def change(s):
            # a pattern like (a+)+$ backtracks exponentially: bounded in time, and the GIL released meanwhile
            try:
                return pattern.sub(repl, s, timeout=max(0.001, deadline - time.monotonic()), concurrent=True).strip()
            except TimeoutError:
                raise Invalid(f'the pattern {find!r} takes too long to match (more than {REGEX_BUDGET_S:g} s over '
                              f'these captions); simplify it (nested repeats such as (a+)+ backtrack without end)',
                              field='find') from None
            except regex.error as e:
                raise BadRequest(f'replace is not a valid replacement for {find!r}: {e}', field='replace') from None
        return change
    raise BadRequest("op must be 'prefix', 'suffix' or 'replace'", field='op')
