"""Buckets of a dataset as a training task would build them (the trainer's own code), suggestions from
the data, the dataset's own dataset.toml (which a new training task on it uses as its draft), and what its
latent cache holds (a cached clip decoded back to video by a TAEHV)."""

from flask import Blueprint, request, send_file

from ..http import body, doc, field, query_int, studio

bp = Blueprint('buckets', __name__, url_prefix='/api/v1')
OPTION_QUERY = {'variant': 'string', 'video_clip_mode': 'string', 'micro_batch_size': 'integer',
                'image_micro_batch_size': 'integer', 'gradient_accumulation_steps': 'integer', 'gpus': 'integer',
                'pipeline_stages': 'integer', 'seed': 'integer'}


def _query_options():
    out = {}
    for name, kind in OPTION_QUERY.items():
        out[name] = query_int(name) if kind == 'integer' else request.args.get(name) or None
    return out


@bp.get('/datasets/<name>/buckets')
@doc('Bucket of every file (or its drop reason), counts, steps per epoch and suggestions under the saved settings',
     response='BucketView', query=OPTION_QUERY)
def get_buckets(name):
    return studio().data.buckets(name, None, _query_options())


@bp.post('/datasets/<name>/buckets')
@doc('The same for settings not saved yet (settings over the saved dataset.toml)', body='BucketRequest',
     response='BucketView')
def try_buckets(name):
    d = body()
    return studio().data.buckets(name, field(d, 'settings', dict), field(d, 'options', dict))


@bp.get('/datasets/<name>/config')
@doc("The dataset's own dataset.toml (text and settings; defaults when it has none)", response='DatasetConfig')
def get_config(name):
    return studio().data.config(name)


@bp.put('/datasets/<name>/config')
@doc('Write the settings as the dataset\'s dataset.toml, validated for the variant (422 lists the issues)',
     body='ConfigSave', response='DatasetConfig')
def save_config(name):
    d = body()
    return studio().data.save_config(name, field(d, 'settings', dict, {}), field(d, 'variant', str))


@bp.get('/datasets/<name>/cache/<variant>')
@doc("The clips the dataset's latent cache holds for a model variant (item, source, frames, size) and the TAEHV "
     'files that can decode them', response='CacheItems')
def cache_items(name, variant):
    return studio().data.cache_items(name, variant)


@bp.get('/datasets/<name>/cache/<variant>/<item>.mp4')
@doc('One cached clip decoded back to video by a TAEHV (?taehv=<path>, default the first that fits; '
     '?max_side= shrinks it): the bucket\'s frame count and size; 422 without a fitting TAEHV; ?token= works here',
     binary=True, query={'taehv': 'string', 'max_side': 'integer'})
def cache_item_video(name, variant, item):
    path = studio().data.cache_decode(name, variant, item, request.args.get('taehv') or None, query_int('max_side'))
    return send_file(path, mimetype='video/mp4', conditional=True)
