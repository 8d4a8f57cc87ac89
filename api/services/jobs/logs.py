"""Incremental log reading: byte offset in, text and the next offset out.

Complete lines only advance the offset; the unfinished last line comes back as `partial` (a progress
bar's current state) and is read again next time. Carriage-return progress bars collapse to their
last state. A read never returns more than `max_bytes` of the file.

Reading backwards (`read_log_before`): the complete lines that end at byte `before` (a line start an
earlier read returned as `offset`), at most `max_bytes` of them, for a viewer that shows the end first
and loads earlier lines as the user scrolls up.
"""

import os


def collapse_cr(text):
    lines = []
    for line in text.split('\n'):
        if '\r' in line:
            parts = [p for p in line.split('\r') if p]
            line = parts[-1] if parts else ''
        lines.append(line)
    return '\n'.join(lines)


def read_log(path, offset=0, max_bytes=65536, tail=None):
    try:
        size = os.path.getsize(path)
    except OSError:
        size = 0
    reset = offset > size               # the file was replaced: start over
    offset = 0 if reset else max(0, offset)
    if tail is not None and offset == 0 and size > tail:
        offset = _line_start(path, size - tail)
    chunk = b''
    if size > offset:
        with open(path, 'rb') as f:
            f.seek(offset)
            chunk = f.read(min(max_bytes, size - offset))
    at_eof = offset + len(chunk) >= size
    nl = chunk.rfind(b'\n')
    if nl >= 0:
        done, rest = chunk[:nl + 1], chunk[nl + 1:]
    elif at_eof:
        done, rest = b'', chunk
    else:                               # a line longer than max_bytes
        cr = chunk.rfind(b'\r')        # progress-bar states up to the last \r are superseded: skip them
        done, rest = (chunk[:cr + 1], b'') if cr >= 0 else (chunk, b'')
    text = collapse_cr(done.decode('utf-8', 'replace')) if b'\n' in done or not done.endswith(b'\r') else ''
    return {'offset': offset, 'next_offset': offset + len(done), 'size': size, 'reset': reset,
            'text': text, 'partial': collapse_cr(rest.decode('utf-8', 'replace')) if at_eof else '',
            'eof': at_eof}


def _line_start(path, pos):
    with open(path, 'rb') as f:
        f.seek(pos)
        head = f.read(65536)
    nl = head.find(b'\n')
    return pos + nl + 1 if nl >= 0 else pos


def read_log_before(path, before, max_bytes=65536):
    """Complete lines ending at byte `before` (clamped to the file size), starting at a line start;
    `offset` is where they start (0: nothing earlier is left)."""
    try:
        size = os.path.getsize(path)
    except OSError:
        size = 0
    end = max(0, min(before, size))
    start = max(0, end - max_bytes)
    chunk = b''
    if end > start:
        with open(path, 'rb') as f:
            f.seek(start)
            chunk = f.read(end - start)
    if start > 0:                       # drop the part of a line that began before the window
        nl = chunk.find(b'\n')
        if 0 <= nl < len(chunk) - 1:
            chunk = chunk[nl + 1:]
            start = end - len(chunk)
        # one line longer than the window: returned cut, so the viewer still moves back
    return {'offset': start, 'next_offset': end, 'size': size, 'reset': False,
            'text': collapse_cr(chunk.decode('utf-8', 'replace')), 'partial': '', 'eof': False,
            'start': start == 0}
