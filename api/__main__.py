"""python -m api [--host H] [--port P] [--data DIR] [--token T]: serve the studio with waitress and run
the scheduler. Refuses to listen on a non-loopback address without an access token or auth = 'accounts'.

python -m api --data DIR --create-admin NAME: make an admin (the password from ODEO_ADMIN_PASSWORD, else asked
twice on the terminal) and exit."""

import argparse
import getpass
import logging
import os
import signal
import sys

from .security import is_loopback
from .settings import SettingsError, load_settings


def parse_args(argv):
    p = argparse.ArgumentParser(prog='python -m api', description='ODEO Studio server')
    p.add_argument('--host', help='bind address (default 127.0.0.1; ODEO_HOST)')
    p.add_argument('--port', type=int, help='port (default 8080; ODEO_PORT)')
    p.add_argument('--data', dest='data_root', help='data root (default ./data; ODEO_DATA)')
    p.add_argument('--token', help="access token (ODEO_TOKEN); required off loopback unless auth = 'accounts'")
    p.add_argument('--create-admin', metavar='NAME', help='make an admin user and exit (password: ODEO_ADMIN_PASSWORD '
                   'or asked twice)')
    return p.parse_args(argv)


def create_admin(settings, name):
    from .accounts import user_store
    from .services.errors import StudioError
    password = os.environ.get('ODEO_ADMIN_PASSWORD')
    if password is None:
        if not sys.stdin.isatty():
            print('error: set ODEO_ADMIN_PASSWORD or run on a terminal to be asked', file=sys.stderr)
            return 2
        password = getpass.getpass(f'password for {name}: ')
        if getpass.getpass('again: ') != password:
            print('error: the two passwords differ', file=sys.stderr)
            return 2
    settings.data_path.mkdir(parents=True, exist_ok=True)
    try:
        user_store(settings).create(name, password, role='admin')
    except StudioError as e:
        print(f'error: {e.message}', file=sys.stderr)
        return 2
    print(f'admin {name} created in {settings.data_path / "users"}')
    if settings.auth != 'accounts':
        print("note: the studio uses accounts only with auth = 'accounts' (settings.toml or ODEO_AUTH=accounts)")
    return 0


GIL_SWITCH_S = 0.001


def main(argv=None):
    args = vars(parse_args(argv))
    admin = args.pop('create_admin')
    try:
        settings = load_settings(args)
    except SettingsError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    if admin:
        return create_admin(settings, admin)
    if not is_loopback(settings.host) and not settings.token and settings.auth != 'accounts':
        print(f'error: refusing to listen on {settings.host} without an access token; '
              "set ODEO_TOKEN or pass --token, or set auth = 'accounts' (or bind to 127.0.0.1)", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(name)s: %(message)s')
    import waitress
    # Many short requests on many threads: one that gives up the GIL for a moment of I/O (a stat, a read) waits
    # for it behind a busy thread for up to the switch interval, 5 ms by default, and again at every such
    # moment. 1 ms keeps the pollers' p99 low while jobs hold the cores (docs/performance.md).
    sys.setswitchinterval(GIL_SWITCH_S)

    from . import create_app
    app = create_app({'settings': settings, 'start_scheduler': True})
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    acc = app.extensions.get('odeo_accounts')
    if acc and not acc.users.any_admin():
        print('warning: no admin can sign in yet; make one with ./start_api.sh --create-admin NAME', flush=True)
    print(f'ODEO Studio on http://{settings.host}:{settings.port}/  (data: {settings.data_path})', flush=True)
    try:
        waitress.serve(app, host=settings.host, port=settings.port, threads=settings.threads,
                       connection_limit=max(100, 4 * settings.threads), ident='odeo-studio',
                       max_request_body_size=max(4 * settings.max_request_bytes,
                                                  settings.upload_chunk_bytes + settings.max_request_bytes,
                                                  settings.max_image_upload_bytes), _quiet=True)
    finally:
        app.extensions['odeo'].shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
