"""Domain errors. api/errors.py maps each class to an HTTP status in one place."""

import errno
import os


class StudioError(Exception):
    code = 'error'

    def __init__(self, message, field=None, issues=None):
        super().__init__(message)
        self.message = message
        self.field = field          # the request field (or form field) at fault, if one is
        self.issues = issues        # config issues: [{file, key, field, value, message}]


class BadRequest(StudioError):
    code = 'bad_request'            # malformed request: wrong type, missing parameter


class Invalid(StudioError):
    code = 'invalid'                # well-formed but refused: config issues, impossible GPU request


class NotFound(StudioError):
    code = 'not_found'


class Conflict(StudioError):
    code = 'conflict'               # not possible in the current state (job running, name taken)


class PathRefused(StudioError):
    code = 'path_refused'           # a path or id that would leave its root


class InsufficientStorage(StudioError):
    code = 'insufficient_storage'   # the disk cannot hold what a request would write


class Unavailable(StudioError):
    code = 'unavailable'            # a server the studio relies on (a model hub) did not answer usefully


class Busy(StudioError):
    code = 'busy'                   # a bounded resource is in use; try again after `retry_after` seconds

    def __init__(self, message, retry_after=5, field=None):
        super().__init__(message, field=field)
        self.retry_after = retry_after


# what a failed write of the data root means for a client: (HTTP status, code); anything else stays a 500
STORAGE_ERRNO = {
    errno.ENOSPC: (507, 'insufficient_storage'),
    errno.EDQUOT: (507, 'insufficient_storage'),
    errno.EROFS: (503, 'read_only'),
    errno.EACCES: (503, 'not_writable'),
    errno.EPERM: (503, 'not_writable'),
}


def storage_problem(exc):
    """An OSError of the storage (full, read-only, not writable) as {status, code, errno, path, reason,
    message}, or None for any other error."""
    if not isinstance(exc, OSError) or exc.errno not in STORAGE_ERRNO:
        return None
    status, code = STORAGE_ERRNO[exc.errno]
    path = exc.filename or getattr(exc, 'path', None)
    reason = exc.strerror or os.strerror(exc.errno)
    return {'status': status, 'code': code, 'errno': errno.errorcode[exc.errno], 'path': str(path) if path else None,
            'reason': reason, 'message': f'cannot write {path}: {reason}' if path else f'storage error: {reason}'}
