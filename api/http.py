"""Helpers the thin routes share: the studio of this app, request parsing, and the OpenAPI annotation."""

from flask import current_app, request

from .services.errors import BadRequest


def studio():
    return current_app.extensions['odeo']


def body():
    """The JSON object of the request (an empty body is {})."""
    if not request.get_data(cache=True):
        return {}
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise BadRequest('the request body must be a JSON object', field='body')
    return data


def field(data, name, kind, default=None, required=False):
    """One field of a JSON body, type-checked (bool is not an int)."""
    if name not in data or data[name] is None:
        if required:
            raise BadRequest(f'{name} is required', field=name)
        return default
    v = data[name]
    ok = isinstance(v, kind) and not (kind is int and isinstance(v, bool))
    if not ok:
        raise BadRequest(f'{name} must be {getattr(kind, "__name__", kind)}', field=name)
    return v


def gpu_request(data):
    """(gpus, gpu_ids) of a body that may override a task's GPU choice."""
    return field(data, 'gpus', int), field(data, 'gpu_ids', list)


def query_int(name, default=None, minimum=None):
    raw = request.args.get(name)
    if raw is None or raw == '':
        return default
    try:
        v = int(raw)
    except ValueError:
        raise BadRequest(f'{name} must be a whole number, not {raw!r}', field=name) from None
    if minimum is not None and v < minimum:
        raise BadRequest(f'{name} must be at least {minimum}', field=name)
    return v


def query_bool(name):
    return request.args.get(name, '').lower() in ('1', 'true', 'yes')


def doc(summary, body=None, response=None, status=200, query=None, tags=None, binary=False):
    """Describe a route for /api/v1/openapi.json (read by api.openapi.spec from the view function)."""
    def wrap(fn):
        fn.openapi = {'summary': summary, 'body': body, 'response': response, 'status': status,
                      'query': query or {}, 'binary': binary, 'tags': tags}
        return fn
    return wrap
