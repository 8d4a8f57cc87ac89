"""Access token: with a token set, every /api/ call needs `Authorization: Bearer <token>`; GET requests
the browser makes directly (downloads, media) may pass `?token=` instead. Compared in constant time."""

import hmac
import ipaddress

from flask import request

from .errors import Unauthorized


def is_loopback(host):
    if host == 'localhost':
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def presented_token():
    header = request.headers.get('Authorization', '')
    if header.startswith('Bearer '):
        return header[7:].strip()
    if request.method in ('GET', 'HEAD'):
        return request.args.get('token')
    return None


def install(app, token):
    if not token:
        return
    expected = token.encode()

    @app.before_request
    def require_token():
        if not request.path.startswith('/api/'):
            return None
        given = presented_token()
        if given is None or not hmac.compare_digest(given.encode(), expected):
            raise Unauthorized('missing or wrong access token (Authorization: Bearer <token>)')
        return None
