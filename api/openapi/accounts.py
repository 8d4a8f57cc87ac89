"""Schemas of the accounts routes: who am I, logging in, personal API tokens, users, the audit log."""

from .types import ANY, BOOL, INT, NUM, STR, arr, obj, opt, ref

SCHEMAS = {
    'WhoAmI': obj({'auth': STR, 'user': opt(obj({'name': STR, 'role': STR})), 'max_gpus_per_user': INT}),
    'Login': obj({'name': STR, 'password': STR}, ['name', 'password']),
    'Logout': obj({'everywhere': BOOL}),
    'LoggedOut': obj({'logged_out': STR, 'everywhere': BOOL}),
    'PasswordChange': obj({'old_password': STR, 'password': STR}, ['old_password', 'password']),
    'Token': obj({'id': STR, 'name': STR, 'created_at': NUM}),
    'TokenList': obj({'tokens': arr(ref('Token'))}),
    'TokenMade': obj({'token': ref('Token'), 'secret': STR}),
    'TokenRevoked': obj({'revoked': STR, 'user': STR}),
    'User': obj({'name': STR, 'role': STR, 'disabled': BOOL, 'created_at': NUM, 'updated_at': NUM, 'tokens': INT}),
    'UserList': obj({'users': arr(ref('User'))}),
    'UserCreate': obj({'name': STR, 'password': STR, 'role': STR}, ['name', 'password']),
    'UserPatch': obj({'role': STR, 'disabled': BOOL, 'password': STR}),
    'AuditLog': obj({'lines': arr(obj({'time': NUM, 'user': opt(STR), 'address': STR, 'action': STR, 'object': ANY,
                                       'status': INT}))}),
}
