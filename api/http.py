"""Helpers the thin routes share: the studio of this app, request parsing, and the OpenAPI annotation."""

from flask import current_app, request

from .services.errors import BadRequest


def studio():
    return current_app.extensions['odeo']


def body():
    """The JSON object of the request (an empty body is {}); every string in it is valid Unicode."""
    if not request.get_data(cache=True):
        return {}
    try:
        data = request.get_json(silent=True)
    except RecursionError:
        raise BadRequest('the request body is nested too deeply', field='body') from None
    if not isinstance(data, dict):
        raise BadRequest('the request body must be a JSON object', field='body')
    bad = _lone_surrogate(data)
    if bad is not None:
        raise BadRequest(f'{bad} is not valid Unicode text (a lone surrogate such as \\ud800)', field=bad)
    return data


def _lone_surrogate(value):
    """The field (dotted path) of the first string with a lone UTF-16 surrogate, which no file, log or
    UTF-8 response can hold; None when there is none. JSON decoding joins valid surrogate pairs."""
    stack = [(value, None)]
    while stack:
        v, at = stack.pop()
        if isinstance(v, str) and not _is_unicode(v):
            return at or 'body'
        if isinstance(v, dict):
            for k, x in v.items():
                if not _is_unicode(k):
                    return at or 'body'
                stack.append((x, f'{at}.{k}' if at else k))
        elif isinstance(v, list):
            stack.extend((x, at) for x in v)
    return None


def _is_unicode(text):
    try:
        text.encode('utf-8')
        return True
    except UnicodeEncodeError:
        return False


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
