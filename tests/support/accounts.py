"""Accounts-mode helpers: a studio process that answers before anyone signs in, a cookie-keeping HTTP
client for it, and users made straight in the data root (as `python -m api --create-admin` does)."""

import http.cookiejar
import json
import urllib.error
import urllib.request

from tests.support.studio import StudioProcess

PASSWORD = 'correct horse 1'


def make_users(data_root, **roles):
    """make_users(root, alice='member', ...): users with PASSWORD in <data_root>/users."""
    from api.accounts import user_store
    from api.settings import load_settings
    store = user_store(load_settings({'data_root': str(data_root)}, env={}))
    for name, role in roles.items():
        store.create(name, PASSWORD, role)
    return store


class AccountsStudio(StudioProcess):
    """`python -m api` with auth = 'accounts'; ready when /whoami (open to all) answers."""
    ready_path = '/whoami'

    def __init__(self, data_root, port, **settings):
        super().__init__(data_root, port, auth='accounts', **settings)

    def session(self):
        return Session(self.base)


class Session:
    """One browser-like client: keeps the session cookie, sends JSON and the studio's X-Requested-With."""

    def __init__(self, base):
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def call(self, method, path, body=None, headers=None, raw=False):
        """(status, response headers, JSON body or bytes with raw)."""
        data = None if body is None else json.dumps(body).encode()
        h = {'Content-Type': 'application/json', 'X-Requested-With': 'odeo', **(headers or {})}
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=h)
        try:
            with self.opener.open(req, timeout=10) as r:
                status, hdrs, payload = r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            status, hdrs, payload = e.code, e.headers, e.read()
        return status, hdrs, payload if raw else json.loads(payload or b'null')

    def login(self, name, password=PASSWORD):
        status, hdrs, out = self.call('POST', '/login', {'name': name, 'password': password})
        assert status == 200, out
        return hdrs
