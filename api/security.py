"""Who may talk to the studio, checked before any route runs, in this order:

1. Host. Only the names the studio is reached by are served: the bind address, `localhost`, loopback
   addresses and the names in the `allowed_hosts` setting (bound to a wildcard address such as 0.0.0.0,
   any IP address too: a DNS-rebinding page always uses a name). Anything else gets 421, so a page
   whose name rebinds to 127.0.0.1 cannot read or change anything.
2. Access token. With a token set, every /api/ call needs `Authorization: Bearer <token>`; GET requests
   the browser makes directly (downloads, media) may pass `?token=` instead. Compared in constant time.
   In accounts mode (api/accounts.py) `identify` names the caller instead: a personal API token in the
   same places, or the session cookie; api/permissions.py then decides what that user may do.
3. Cross-site requests. A state-changing request (POST, PUT, PATCH, DELETE) whose Origin (or, without
   one, Referer) is not the studio's own gets 403; and it must show that it is not a plain HTML form:
   a JSON body (`Content-Type: application/json`), the `X-Requested-With` header (any value; the UI
   sends it on every request) or a valid bearer token. A browser sends none of those cross-site
   without a CORS preflight, which the studio never answers with CORS headers; the token cannot be
   sent cross-site at all without one, so it is enough on its own.

Every response carries nosniff, no-referrer and a Content-Security-Policy that lets the page load only
from the studio itself and never be framed.
"""

import hmac
import ipaddress
from urllib.parse import urlsplit

from flask import request

from .errors import Forbidden, Misdirected, Unauthorized

CHANGES = frozenset({'POST', 'PUT', 'PATCH', 'DELETE'})
CLIENT_HEADER = 'X-Requested-With'
WILDCARD = {'', '0.0.0.0', '::'}

# The UI is same-origin ES modules and CSS; thumbnails, media and downloads come from the studio too.
# img-src data: is the page's empty favicon (`<link rel="icon" href="data:,">`). Styles the scripts set
# through element.style (CSSOM) are not inline styles, so style-src needs no 'unsafe-inline'.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self'; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEADERS = {'X-Content-Type-Options': 'nosniff', 'Referrer-Policy': 'no-referrer',
           'Content-Security-Policy': CSP, 'X-Frame-Options': 'DENY'}


def is_loopback(host):
    if host == 'localhost':
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_name(host):
    """The name of a Host header value without its port: 'a.b:8080' -> 'a.b', '[::1]:80' -> '::1'."""
    host = host.strip().lower()
    if host.startswith('['):
        return host[1:host.find(']')] if ']' in host else host
    if host.count(':') == 1:
        host = host.split(':')[0]
    return host.rstrip('.')


class HostCheck:
    def __init__(self, bind, allowed):
        self.bind = bind.strip().lower()
        self.names = {'localhost', self.bind} | {host_name(h) for h in allowed if h.strip() and h != '*'}
        self.any = '*' in allowed

    def __call__(self, host):
        name = host_name(host)
        if self.any or name in self.names:
            return True
        try:
            ip = ipaddress.ip_address(name)
        except ValueError:
            return False
        return ip.is_loopback or self.bind in WILDCARD


def presented_token():
    header = request.headers.get('Authorization', '')
    if header.startswith('Bearer '):
        return header[7:].strip()
    if request.method in ('GET', 'HEAD'):
        return request.args.get('token')
    return None


def same_origin(url, host, allowed):
    """Is `url` (an Origin or Referer) the studio itself? `allowed` are names a proxy may front it as."""
    parts = urlsplit(url)
    if parts.scheme not in ('http', 'https') or not parts.netloc:
        return False                    # includes the opaque origin 'null'
    return parts.netloc.lower() == host.lower() or host_name(parts.netloc) in allowed


def install(app, settings, identify=None):
    hosts = HostCheck(settings.host, settings.allowed_hosts)
    proxied = {host_name(h) for h in settings.allowed_hosts if h != '*'}
    expected = settings.token.encode() if settings.token else None

    @app.before_request
    def guard():
        host = request.headers.get('Host')
        if host is not None and not hosts(host):
            raise Misdirected(f'this studio does not serve the host {host_name(host)!r}; '
                              'add it to the allowed_hosts setting if it should', field='Host')
        api = request.path.startswith('/api/')
        bearer = False
        if expected is not None and api:
            given = presented_token()
            if given is None or not hmac.compare_digest(given.encode(), expected):
                raise Unauthorized('missing or wrong access token (Authorization: Bearer <token>)')
            bearer = request.headers.get('Authorization', '').startswith('Bearer ')
        elif identify is not None:
            bearer = identify()
        if request.method not in CHANGES:
            return None
        origin = request.headers.get('Origin')
        source, url = ('Origin', origin) if origin is not None else ('Referer', request.headers.get('Referer'))
        if url is not None and not same_origin(url, host or '', proxied):
            raise Forbidden(f'cross-site request refused ({source}: {url})', field=source)
        if not (bearer or request.is_json or request.headers.get(CLIENT_HEADER)):
            raise Forbidden(f'a request that changes something needs a JSON body (Content-Type: application/json) '
                            f'or the header {CLIENT_HEADER}: odeo', field=CLIENT_HEADER)
        return None

    @app.after_request
    def headers(response):
        for k, v in HEADERS.items():
            response.headers.setdefault(k, v)
        return response
