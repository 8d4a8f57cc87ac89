"""Users: `<data>/users/<name>.json`, one record each, written atomically (records.py), readable by the
studio's own user only (the folder is 0700, each file 0600).

    {"name", "role": admin|member|viewer, "password_hash", "disabled", "session_version",
     "created_at", "updated_at", "tokens": [{"id", "name", "sha256", "created_at"}]}

Passwords are kept as the hash of a well-kept library, given as `hasher` (an object with `hash(password)`
and `check(stored, password)`; api/accounts.py passes werkzeug's). A personal API token is
`odeo_<id>_<secret>`: the id (8 hex digits) names it in lists and revocations, the record keeps only the
SHA-256 of the whole token, and the secret is shown once, when it is made. `session_version` goes up
when the password changes or the user logs out everywhere; a session cookie carrying an older one is void.
"""

import hashlib
import hmac
import re
import secrets
import threading
import time
from pathlib import Path

from ..errors import BadRequest, Conflict, NotFound
from ..records import clean_temp_files, read_record, updated, write_record

ROLES = ('admin', 'member', 'viewer')
NAME_RE = re.compile(r'^[a-z][a-z0-9_.-]{0,31}$')
TOKEN_RE = re.compile(r'^odeo_([0-9a-f]{8})_[A-Za-z0-9_-]{20,}$')
MIN_PASSWORD = 8
MAX_TOKENS = 20


def check_user_name(name, field='name'):
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise BadRequest(f'{field} must be 1 to 32 lowercase letters, digits, ".", "_" or "-", starting with a '
                         'letter', field=field)
    return name


def check_password(password, field='password'):
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise BadRequest(f'{field} must be at least {MIN_PASSWORD} characters', field=field)
    if len(password) > 1024:
        raise BadRequest(f'{field} is longer than 1024 characters', field=field)
    return password


def check_role(role):
    if role not in ROLES:
        raise BadRequest(f'role must be one of {", ".join(ROLES)}', field='role')
    return role


def digest(token):
    return hashlib.sha256(token.encode('utf-8')).hexdigest()


def public(user):
    """What the API shows about a user: never the password hash nor token digests."""
    return {'name': user['name'], 'role': user['role'], 'disabled': user.get('disabled', False),
            'created_at': user.get('created_at'), 'updated_at': user.get('updated_at'),
            'tokens': len(user.get('tokens', []))}


def token_view(tok):
    return {k: tok[k] for k in ('id', 'name', 'created_at')}


class UserStore:
    def __init__(self, folder, hasher):
        self.folder = Path(folder)
        self.hasher = hasher
        self._users = {}
        self._token_owner = {}          # token id -> user name
        self._lock = threading.RLock()
        # a password that is never anyone's, checked when a name is unknown so that answers take as long
        self._decoy = hasher.hash(secrets.token_urlsafe(16))

    def load(self):
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o700)
        users = {}
        for path in sorted(self.folder.glob('*.json')):
            clean_temp_files(self.folder, path.name)
            rec = read_record(path)
            if rec and rec.get('name') == path.stem and rec.get('role') in ROLES:
                users[rec['name']] = rec
        with self._lock:
            self._users = users
            self._token_owner = {t['id']: u['name'] for u in users.values() for t in u.get('tokens', [])}
        return self

    def _save(self, user):
        write_record(self.folder / f'{user["name"]}.json', user)
        self._users[user['name']] = user
        return user

    # ---- reading ---------------------------------------------------------------------------------
    def find(self, name):
        return self._users.get(name) if isinstance(name, str) else None

    def get(self, name):
        user = self.find(name)
        if user is None:
            raise NotFound(f'no user {name!r}', field='name')
        return user

    def all(self):
        return [self._users[n] for n in sorted(self._users)]

    def any_admin(self):
        return any(u['role'] == 'admin' and not u.get('disabled') for u in self._users.values())

    # ---- changing --------------------------------------------------------------------------------
    def create(self, name, password, role='member'):
        check_user_name(name)
        check_password(password)
        check_role(role)
        with self._lock:
            if name in self._users:
                raise Conflict(f'a user named {name!r} exists', field='name')
            now = time.time()
            return self._save({'name': name, 'role': role, 'password_hash': self.hasher.hash(password),
                               'disabled': False, 'session_version': 1, 'created_at': now, 'updated_at': now,
                               'tokens': []})

    def change(self, name, role=None, disabled=None, password=None):
        """An admin's changes: role, disabled, a new password (which ends the user's sessions)."""
        with self._lock:
            user = self.get(name)
            changes = {}
            if role is not None:
                changes['role'] = check_role(role)
            if disabled is not None:
                changes['disabled'] = bool(disabled)
            if password is not None:
                changes.update(password_hash=self.hasher.hash(check_password(password)),
                               session_version=user['session_version'] + 1)
            if user['role'] == 'admin' and (changes.get('role', 'admin') != 'admin' or changes.get('disabled')):
                others = [u for u in self._users.values()
                          if u['name'] != name and u['role'] == 'admin' and not u.get('disabled')]
                if not others:
                    raise Conflict(f'{name} is the only admin; make another admin first', field='role')
            return self._save(updated(user, **changes)) if changes else user

    def set_password(self, name, old, new):
        """A user's own change: the old password first. Ends the user's other sessions."""
        with self._lock:
            user = self.get(name)
            if not self.hasher.check(user['password_hash'], old or ''):
                raise BadRequest('the current password is wrong', field='old_password')
            return self.change(name, password=new)

    def end_sessions(self, name):
        with self._lock:
            user = self.get(name)
            return self._save(updated(user, session_version=user['session_version'] + 1))

    # ---- credentials -------------------------------------------------------------------------------
    def authenticate(self, name, password):
        """The user whose name and password these are (enabled), else None; as slow for unknown names."""
        user = self.find(name)
        if user is None:
            self.hasher.check(self._decoy, password or '')
            return None
        if not self.hasher.check(user['password_hash'], password or '') or user.get('disabled'):
            return None
        return user

    def session_user(self, name, version):
        user = self.find(name)
        if user is None or user.get('disabled') or user['session_version'] != version:
            return None
        return user

    def create_token(self, name, label):
        """(token view, the token itself): the only time the secret exists outside the caller."""
        if not isinstance(label, str) or not label.strip() or len(label) > 100:
            raise BadRequest('name must be 1 to 100 characters', field='name')
        with self._lock:
            user = self.get(name)
            if len(user['tokens']) >= MAX_TOKENS:
                raise Conflict(f'{name} has {MAX_TOKENS} tokens; revoke one first', field='name')
            tid = secrets.token_hex(4)
            while tid in self._token_owner:
                tid = secrets.token_hex(4)
            secret = f'odeo_{tid}_{secrets.token_urlsafe(32)}'
            tok = {'id': tid, 'name': label.strip(), 'sha256': digest(secret), 'created_at': time.time()}
            self._save(updated(user, tokens=user['tokens'] + [tok]))
            self._token_owner[tid] = name
            return token_view(tok), secret

    def tokens(self, name):
        return [token_view(t) for t in self.get(name)['tokens']]

    def revoke_token(self, name, token_id, any_user=False):
        """Revoke one of `name`'s tokens (an admin, any_user=True: anyone's)."""
        with self._lock:
            owner = self._token_owner.get(token_id)
            if owner is None or (owner != name and not any_user):
                raise NotFound(f'no token {token_id!r}', field='id')
            user = self.get(owner)
            self._save(updated(user, tokens=[t for t in user['tokens'] if t['id'] != token_id]))
            del self._token_owner[token_id]
            return {'revoked': token_id, 'user': owner}

    def token_user(self, token):
        """The enabled user a personal token belongs to, else None (compared by digest, in constant time)."""
        m = TOKEN_RE.match(token or '')
        user = self.find(self._token_owner.get(m.group(1))) if m else None
        if user is None or user.get('disabled'):
            return None
        want = digest(token)
        if any(t['id'] == m.group(1) and hmac.compare_digest(t['sha256'], want) for t in user['tokens']):
            return user
        return None
