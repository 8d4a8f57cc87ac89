"""Domain errors -> HTTP status, in one place. Every error is JSON:
    {"error": {"code": "invalid", "message": "...", "field": "epochs", "issues": [...]}}
and never a traceback (unexpected errors are logged and reported as 500 "internal")."""

import logging

from flask import jsonify, request
from werkzeug.exceptions import HTTPException

from .services.errors import (BadRequest, Busy, Conflict, InsufficientStorage, Invalid, NotFound, PathRefused,
                              StudioError, Unavailable, storage_problem)

log = logging.getLogger(__name__)


class Unauthorized(StudioError):
    code = 'unauthorized'


class Forbidden(StudioError):
    code = 'forbidden'              # a cross-site request, or a state change without the studio's header


class Misdirected(StudioError):
    code = 'misdirected'            # a Host header the studio does not serve (DNS rebinding)


class Throttled(StudioError):
    code = 'throttled'              # too many failed logins from this address for this name: wait retry_after s

    def __init__(self, message, retry_after, field=None):
        super().__init__(message, field=field)
        self.retry_after = max(1, int(retry_after + 0.999))


STATUS = {
    BadRequest: 400,
    PathRefused: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    Misdirected: 421,
    Throttled: 429,
    Invalid: 422,
    Unavailable: 502,
    Busy: 503,
    InsufficientStorage: 507,
}


HTTP_CODES = {400: 'bad_request', 401: 'unauthorized', 403: 'forbidden', 404: 'not_found',
              405: 'method_not_allowed', 413: 'too_large', 415: 'unsupported_media_type'}


def error_response(status, code, message, field=None, issues=None):
    err = {'code': code, 'message': message, 'field': field}
    if issues is not None:
        err['issues'] = issues
    resp = jsonify({'error': err})
    resp.status_code = status
    if status == 401:
        resp.headers['WWW-Authenticate'] = 'Bearer'
    return resp


def status_of(exc):
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def register(app):
    @app.errorhandler(StudioError)
    def studio_error(e):
        resp = error_response(status_of(e), e.code, e.message, e.field, e.issues)
        if isinstance(e, (Busy, Throttled)):
            resp.headers['Retry-After'] = str(e.retry_after)
        return resp

    @app.errorhandler(HTTPException)
    def http_error(e):
        message = e.description or e.name
        if e.code == 413:
            message = f'request body larger than {request.max_content_length or app.config["MAX_CONTENT_LENGTH"]} bytes'
        return error_response(e.code or 500, HTTP_CODES.get(e.code, e.name.lower().replace(' ', '_')), message)

    @app.errorhandler(OSError)
    def os_error(e):
        problem = storage_problem(e)
        if problem is None:
            return unexpected(e)
        log.error('storage: %s', problem['message'])
        resp = error_response(problem['status'], problem['code'], problem['message'], field=None)
        if problem['status'] == 503:
            resp.headers['Retry-After'] = '30'
        return resp

    @app.errorhandler(Exception)
    def unexpected(e):
        log.exception('unexpected error')
        return error_response(500, 'internal', f'internal error ({type(e).__name__}); see the studio log')
