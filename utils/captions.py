"""Captions of one [[directory]]: where they come from, and the variants that get cached.

Sources, in precedence order. For each media file the first source that has an entry for it wins,
even when that entry is empty (an empty caption is then reported, not silently replaced):
1. a metadata table in DiffSynth-Studio's layout: `metadata_file` when the config sets it, else
   metadata.csv, metadata.json or metadata.jsonl in the folder. Columns `video` or `image` name the
   file (relative to the folder, or absolute) and `prompt` holds the caption. Several rows naming
   the same file give several captions. CSV is read with the csv module, so quoted fields may hold
   commas and newlines. Rows are numbered as a spreadsheet shows them (header = row 1);
2. captions.json in the folder: {"file name": "caption"} or {"file name": ["caption", ...]};
3. a sidecar text file next to the media file: clip.mp4 -> clip.txt (UTF-8, surrounding blanks stripped).
Files a metadata table names are part of the dataset even when they sit in a sub-folder; a row naming
a missing file is reported as `metadata.csv row 12: 'clip.mp4' not found`.

What reaches the text encoder is `clean_caption` of each variant (prefix and tag shuffle applied
first): the prompt cleaning of the Wan reference code, diffusion-pipe's Wan tokenizer and diffusers'
Wan pipelines (ftfy's fix_text, HTML entities unescaped twice, runs of whitespace made one space,
ends stripped). The variants are cleaned here, where the dataset is built, so the report shows the
text that trains and the cache's text keys hash it: a caption the cleaning changes gets a new key and
is encoded again, one it leaves alone keeps its embedding (the encoder sees the same string).
"""

import csv
import html
import io
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

import ftfy

CAPTIONS_JSON = 'captions.json'
METADATA_NAMES = ('metadata.csv', 'metadata.json', 'metadata.jsonl')
FILE_COLUMNS = ('video', 'image')
PROMPT_COLUMN = 'prompt'


class CaptionError(Exception):
    """A caption that exists but cannot be used (not UTF-8, unreadable)."""


@dataclass
class CaptionSources:
    folder: Path
    tables: list = field(default_factory=list)     # [(label, {key: [captions]})] in precedence order
    listed: dict = field(default_factory=dict)     # media Path named by a metadata row -> 'metadata.csv row 3'
    problems: list = field(default_factory=list)   # human messages about the sources themselves


def _key(folder: Path, path: Path):
    try:
        return path.relative_to(folder).as_posix()
    except ValueError:
        return str(path)


def load_sources(folder, metadata_file=None) -> CaptionSources:
    folder = Path(folder)
    src = CaptionSources(folder)
    meta = Path(metadata_file) if metadata_file else next((folder / n for n in METADATA_NAMES if (folder / n).is_file()), None)
    if meta is not None:
        if not meta.is_file():
            src.problems.append(f'{meta.name}: metadata_file not found ({meta})')
        else:
            src.tables.append((meta.name, _load_metadata(meta, folder, src)))
    cj = folder / CAPTIONS_JSON
    if cj.is_file():
        src.tables.append((CAPTIONS_JSON, _load_captions_json(cj, src)))
    return src


def _read_text(path: Path, what: str):
    try:
        return path.read_bytes().decode('utf-8-sig')
    except UnicodeDecodeError as e:
        raise CaptionError(f'{what} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at position {e.start})') from None
    except OSError as e:
        raise CaptionError(f'{what} cannot be read ({e.strerror})') from None


def _metadata_rows(meta: Path, text: str):
    """(row label, dict) per record, or raises ValueError with a message."""
    if meta.suffix.lower() == '.csv':
        reader = csv.DictReader(io.StringIO(text, newline=''))
        columns = [c.strip() for c in reader.fieldnames or []]
        reader.fieldnames = columns
        if not any(c in columns for c in FILE_COLUMNS) or PROMPT_COLUMN not in columns:
            raise ValueError(f"needs a 'video' or 'image' column and a 'prompt' column (found: {', '.join(columns) or 'nothing'})")
        try:
            return [(f'row {i}', row) for i, row in enumerate(reader, start=2)]
        except csv.Error as e:
            raise ValueError(f'CSV syntax error near line {reader.line_num}: {e}') from None
    try:
        if meta.suffix.lower() == '.jsonl':
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            records = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f'not valid JSON (line {e.lineno} column {e.colno}: {e.msg})') from None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise ValueError('must be a list of {"video" or "image": file, "prompt": caption} objects')
    return [(f'entry {i}', r) for i, r in enumerate(records, start=1)]


def _load_metadata(meta: Path, folder: Path, src: CaptionSources):
    table = {}
    try:
        rows = _metadata_rows(meta, _read_text(meta, meta.name))
    except (CaptionError, ValueError) as e:
        src.problems.append(f'{meta.name}: {e}')
        return table
    for label, row in rows:
        name = next((row[c] for c in FILE_COLUMNS if isinstance(row.get(c), str) and row[c].strip()), None)
        if name is None:
            src.problems.append(f"{meta.name} {label}: no file in the 'video' / 'image' column")
            continue
        name = name.strip()
        path = Path(name) if Path(name).is_absolute() else folder / name
        if not path.is_file():
            src.problems.append(f'{meta.name} {label}: {name!r} not found')
            continue
        prompt = row.get(PROMPT_COLUMN)
        table.setdefault(_key(folder, path), []).append(prompt.strip() if isinstance(prompt, str) else '')
        src.listed.setdefault(path, f'{meta.name} {label}')
    return table


def _load_captions_json(path: Path, src: CaptionSources):
    try:
        data = json.loads(_read_text(path, CAPTIONS_JSON))
    except CaptionError as e:
        src.problems.append(str(e))
        return {}
    except json.JSONDecodeError as e:
        src.problems.append(f'{CAPTIONS_JSON}: not valid JSON (line {e.lineno} column {e.colno}: {e.msg})')
        return {}
    if not isinstance(data, dict):
        src.problems.append(f'{CAPTIONS_JSON}: must be an object {{"file name": "caption" or ["caption", ...]}}')
        return {}
    table = {}
    for name, value in data.items():
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            src.problems.append(f'{CAPTIONS_JSON}: {name!r} must map to a caption or a list of captions')
            continue
        table[name] = [v.strip() for v in value]
    return table


def find_captions(src: CaptionSources, media: Path):
    """(captions, source label) for a media file; captions is None when no source has it.
    Raises CaptionError when the source that has it cannot be read."""
    key = _key(src.folder, media)
    for label, table in src.tables:
        for k in (key, media.name):
            if k in table:
                return list(table[k]), label
    sidecar = media.with_suffix('.txt')
    if sidecar.is_file():
        return [_read_text(sidecar, sidecar.name).strip()], sidecar.name
    return None, None


def clean_caption(text):
    """A caption as the Wan text encoder is meant to see it (see the module doc)."""
    text = html.unescape(html.unescape(ftfy.fix_text(text)))
    return re.sub(r'\s+', ' ', text).strip()


def caption_variants(captions, prefix='', shuffle_num=0, delimiter=', ', seed_key=''):
    """What gets cached for a file: each caption as is (shuffle_num = 0) or shuffle_num tag-shuffled
    copies of it, each with `prefix` in front, then cleaned (clean_caption). Shuffles are seeded by
    `seed_key`, so every run and every rank produces the same variants."""
    if shuffle_num <= 0:
        return [clean_caption(prefix + c) for c in captions]
    out = []
    for i, caption in enumerate(captions):
        rng = random.Random(f'{seed_key}|{i}')
        tags = caption.split(delimiter)
        for _ in range(shuffle_num):
            rng.shuffle(tags)
            out.append(clean_caption(prefix + delimiter.join(tags)))
    return out
