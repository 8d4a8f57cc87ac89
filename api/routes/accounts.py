"""Accounts (auth = 'accounts'): log in and out, who am I, one's password and personal API tokens; for admins
the users and the audit log. Who may call each is in api/permissions.py; in single-user mode only
/whoami answers (the others 404)."""

from flask import Blueprint, current_app, request

from ..accounts import accounts, current_user
from ..http import body, doc, field, query_int
from ..services.accounts.users import public

bp = Blueprint('accounts', __name__, url_prefix='/api/v1')


@bp.get('/whoami')
@doc('The signed-in user and role (user null when nobody is), and the auth mode: single or accounts',
     response='WhoAmI')
def whoami():
    acc = current_app.extensions.get('odeo_accounts')
    return acc.whoami() if acc else {'auth': 'single', 'user': None, 'max_gpus_per_user': 0}


@bp.post('/login')
@doc('Sign in with name and password: sets the session cookie (429 with Retry-After after repeated failures)',
     body='Login', response='WhoAmI')
def login():
    d = body()
    return accounts().login(field(d, 'name', str, required=True), field(d, 'password', str, required=True))


@bp.post('/logout')
@doc("Sign out (everywhere=true: end every session of this user)", body='Logout', response='LoggedOut')
def logout():
    return accounts().logout(field(body(), 'everywhere', bool, False))


@bp.post('/account/password')
@doc('Change one\'s own password (the current one first); other sessions end', body='PasswordChange',
     response='WhoAmI')
def change_password():
    d, acc = body(), accounts()
    user = acc.users.set_password(current_user()['name'], field(d, 'old_password', str, required=True),
                                  field(d, 'password', str, required=True))
    acc.start_session(user)
    return acc.whoami(user)


@bp.get('/tokens')
@doc("One's personal API tokens (id, name, created; never the secret)", response='TokenList')
def list_tokens():
    return {'tokens': accounts().users.tokens(current_user()['name'])}


@bp.post('/tokens')
@doc('Make a personal API token; the answer holds the secret, shown this once (stored only as a hash)',
     body='NameBody', response='TokenMade', status=201)
def create_token():
    tok, secret = accounts().users.create_token(current_user()['name'], field(body(), 'name', str, required=True))
    return {'token': tok, 'secret': secret}, 201


@bp.delete('/tokens/<token_id>')
@doc('Revoke a personal API token (one\'s own; an admin any)', response='TokenRevoked')
def revoke_token(token_id):
    user = current_user()
    return accounts().users.revoke_token(user['name'], token_id, any_user=user['role'] == 'admin')


@bp.get('/users')
@doc('Users with role and state (admins)', response='UserList')
def list_users():
    return {'users': [public(u) for u in accounts().users.all()]}


@bp.post('/users')
@doc('Create a user: name, password, role admin|member|viewer (admins)', body='UserCreate', response='User',
     status=201)
def create_user():
    d = body()
    return public(accounts().users.create(field(d, 'name', str, required=True), field(d, 'password', str, required=True),
                                          field(d, 'role', str, 'member'))), 201


@bp.patch('/users/<user>')
@doc("Change a user's role, disable or enable them, or reset their password, which ends their sessions (admins)",
     body='UserPatch', response='User')
def change_user(user):
    d = body()
    return public(accounts().users.change(user, role=field(d, 'role', str), disabled=field(d, 'disabled', bool),
                                          password=field(d, 'password', str)))


@bp.get('/audit')
@doc('The audit log, newest first: time, user, address, action, object, status (admins)', response='AuditLog',
     query={'limit': 'integer', 'user': 'string', 'action': 'string'})
def audit():
    return {'lines': accounts().audit.tail(min(query_int('limit', 200, 1), 5000), request.args.get('user') or None,
                                           request.args.get('action') or None)}
