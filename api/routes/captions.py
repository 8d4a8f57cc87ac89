"""Captions: edit one (the sidecar .txt), bulk prefix / suffix / find-and-replace with a preview, and
auto-captioning as a queued `caption` job with a vision-language model from a local folder."""

from flask import Blueprint

from ..http import body, doc, field, studio
from ..services.data.captioning import DEFAULT_FRAMES, DEFAULT_MAX_NEW_TOKENS, DEFAULT_PROMPT, OVERWRITE

bp = Blueprint('captions', __name__, url_prefix='/api/v1')


def data():
    return studio().data


@bp.put('/datasets/<name>/captions/<path:file>')
@doc("Save a file's caption as its sidecar .txt (UTF-8, atomic); a non-UTF-8 sidecar is only replaced with "
     'replace_invalid', body='CaptionEdit', response='Caption')
def set_caption(name, file):
    d = body()
    return data().set_caption(name, file, field(d, 'text', str, required=True), field(d, 'replace_invalid', bool, False))


@bp.post('/datasets/<name>/captions/bulk')
@doc('Prefix, suffix or find-and-replace over captions (files or search q); apply=false only counts and previews',
     body='BulkCaptions', response='BulkResult')
def bulk_captions(name):
    d = body()
    return data().bulk_captions(name, field(d, 'op', str, required=True), files=d.get('files'), q=field(d, 'q', str),
                                apply=field(d, 'apply', bool, False), text=field(d, 'text', str, ''),
                                find=field(d, 'find', str, ''), replace=field(d, 'replace', str, ''),
                                regex=field(d, 'regex', bool, False), case=field(d, 'case', bool, True))


@bp.get('/captioning')
@doc('Auto-captioning defaults and the captioning models found under the model roots', response='Captioning')
def captioning():
    return {'prompt': DEFAULT_PROMPT, 'frames': DEFAULT_FRAMES, 'max_new_tokens': DEFAULT_MAX_NEW_TOKENS,
            'overwrite': list(OVERWRITE), 'models': data().captioning.models()}


@bp.post('/datasets/<name>/caption-jobs')
@doc('Queue auto-captioning of the dataset (a caption job); human captions are kept unless overwrite=all',
     body='CaptionJobCreate', response='CaptionJob', status=202)
def queue_captions(name):
    return data().queue_captions(name, body()), 202


@bp.get('/datasets/<name>/caption-jobs')
@doc("The dataset's caption jobs, newest first, with their progress", response='CaptionJobList')
def caption_jobs(name):
    return {'jobs': data().caption_jobs(name)}
