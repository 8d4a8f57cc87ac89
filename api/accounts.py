"""Accounts mode (auth = 'accounts') in front of the routes: who calls (a session cookie or a personal API
token), whether they may (api/permissions.py), and what they did (the audit log).

Sessions are Flask's signed cookie (`odeo_session`: HttpOnly, SameSite=Strict, Secure when `behind_tls`)
holding the user name and the user's session version; the signing key is `<data>/secret_key` (0600, made
once). A personal token comes as `Authorization: Bearer odeo_<id>_<secret>` and, like the shared token of
single-user mode, exempts a state change from the X-Requested-With rule (api/security.py); a cookie does
not. Without a signed-in user the page `/` is the login page.
"""

import os
import secrets
from datetime import timedelta

from flask import current_app, g, render_template, request, session
from werkzeug.security import check_password_hash, generate_password_hash

from . import permissions
from .errors import Throttled, Unauthorized
from .security import CHANGES, presented_token
from .services.accounts import acting
from .services.accounts.audit import AuditLog
from .services.accounts.throttle import LoginThrottle
from .services.accounts.users import UserStore
from .services.errors import NotFound

COOKIE = 'odeo_session'
QUIET = {'uploads.put_chunk'}       # one line per upload (its creation), not one per chunk


class PasswordHasher:
    """werkzeug.security's salted scrypt hashes (the method string is kept in the hash, so a later default
    still checks old hashes)."""

    @staticmethod
    def hash(password):
        return generate_password_hash(password)

    @staticmethod
    def check(stored, password):
        return check_password_hash(stored, password)


def user_store(settings):
    return UserStore(settings.data_path / 'users', PasswordHasher()).load()


def secret_key(path):
    """The session signing key: read, or made once with mode 0600 (a restart keeps everyone signed in)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()
    with os.fdopen(fd, 'wb') as f:
        f.write(secrets.token_bytes(32))
        f.flush()
        os.fsync(f.fileno())
    return path.read_bytes()


def accounts():
    """The Accounts of this app; 404 in single-user mode."""
    acc = current_app.extensions.get('odeo_accounts')
    if acc is None:
        raise NotFound("accounts are off (auth = 'single'); set auth = 'accounts' to use them")
    return acc


def current_user():
    return g.get('user')


class Accounts:
    def __init__(self, settings):
        self.settings = settings
        self.users = user_store(settings)
        self.throttle = LoginThrottle()
        self.audit = AuditLog(settings.data_path / 'audit.jsonl')

    # ---- who calls --------------------------------------------------------------------------------
    def identify(self):
        """Set g.user from a personal token or the session; True when a valid token came in the header."""
        g.user, bearer = None, False
        given = presented_token() if request.path.startswith('/api/') else None
        if given:
            g.user = self.users.token_user(given)
            if g.user is None:
                raise Unauthorized('unknown or revoked personal API token')
            bearer = request.headers.get('Authorization', '').startswith('Bearer ')
        elif session.get('user'):
            g.user = self.users.session_user(session['user'], session.get('v'))
            if g.user is None:
                session.clear()             # password changed, logged out everywhere, disabled or removed
        g.actor = acting.acting_as(g.user['name'] if g.user else None)
        return bearer

    # ---- logging in and out ---------------------------------------------------------------------------
    def login(self, name, password):
        address = request.remote_addr
        g.login_name = name
        wait = self.throttle.wait(name, address)
        if wait > 0:
            raise Throttled(f'too many failed logins for {name!r} from {address}; try again in {wait:.0f} s',
                            retry_after=wait)
        user = self.users.authenticate(name, password)
        if user is None:
            self.throttle.failed(name, address)
            raise Unauthorized('wrong user name or password (or the user is disabled)')
        self.throttle.succeeded(name, address)
        self.start_session(user)
        return self.whoami(user)

    @staticmethod
    def start_session(user):
        session.clear()
        session.permanent = True
        session['user'], session['v'] = user['name'], user['session_version']

    def logout(self, everywhere=False):
        user = current_user()
        if everywhere:
            self.users.end_sessions(user['name'])
        session.clear()
        return {'logged_out': user['name'], 'everywhere': everywhere}

    def whoami(self, user=None):
        user = user or current_user()
        return {'auth': 'accounts', 'user': {'name': user['name'], 'role': user['role']} if user else None,
                'max_gpus_per_user': self.settings.max_gpus_per_user}

    # ---- around every request ---------------------------------------------------------------------
    def authorize(self):
        if request.endpoint == 'system.index' and current_user() is None:
            return render_template('login.html')
        if request.path.startswith('/api/'):
            permissions.authorize(current_app.extensions['odeo'], current_user(), request.endpoint, request.method,
                                  request.view_args or {})
        return None

    def record(self, response):
        """An audit line for every state change (refused ones too) and every download of a run's file."""
        endpoint = request.endpoint or request.path
        download = endpoint == 'jobs.job_file' and response.headers.get('Content-Disposition', '').startswith('attachment')
        if not request.path.startswith('/api/') or endpoint in QUIET or (request.method not in CHANGES and not download):
            return response
        obj = {'path': request.path, **(request.view_args or {})}
        if response.status_code == 201 and response.is_json:
            made = response.get_json(silent=True) or {}
            made = made.get('token', made) if endpoint == 'accounts.create_token' else made
            obj['created'] = made.get('id') or made.get('name')
        user = current_user()
        self.audit.record(user['name'] if user else g.get('login_name'), request.remote_addr,
                          'download' if download else endpoint, obj, response.status_code)
        return response


def install(app, settings):
    """Accounts in front of the app. Call before security.install (which identifies the caller through
    `identify`) and `guard` after it (so Host and cross-site checks come first)."""
    acc = Accounts(settings)
    app.extensions['odeo_accounts'] = acc
    app.secret_key = secret_key(settings.data_path / 'secret_key')
    app.config.update(SESSION_COOKIE_NAME=COOKIE, SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE='Strict',
                      SESSION_COOKIE_SECURE=settings.behind_tls,
                      PERMANENT_SESSION_LIFETIME=timedelta(hours=settings.session_hours))
    return acc


def guard(app, acc):
    app.before_request(acc.authorize)
    app.after_request(acc.record)

    @app.teardown_request
    def forget_actor(_exc=None):
        token = g.pop('actor', None)
        if token is not None:
            acting.done(token)
