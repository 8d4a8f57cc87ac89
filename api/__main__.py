"""python -m api [--host H] [--port P] [--data DIR] [--token T]: serve the studio with waitress and run
the scheduler. Refuses to listen on a non-loopback address without an access token."""

import argparse
import logging
import signal
import sys

from .security import is_loopback
from .settings import SettingsError, load_settings


def parse_args(argv):
    p = argparse.ArgumentParser(prog='python -m api', description='ODEO Studio server')
    p.add_argument('--host', help='bind address (default 127.0.0.1; ODEO_HOST)')
    p.add_argument('--port', type=int, help='port (default 8080; ODEO_PORT)')
    p.add_argument('--data', dest='data_root', help='data root (default ./data; ODEO_DATA)')
    p.add_argument('--token', help='access token (ODEO_TOKEN); required off loopback')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        settings = load_settings(vars(args))
    except SettingsError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    if not is_loopback(settings.host) and not settings.token:
        print(f'error: refusing to listen on {settings.host} without an access token; '
              'set ODEO_TOKEN or pass --token (or bind to 127.0.0.1)', file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(name)s: %(message)s')
    import waitress

    from . import create_app
    app = create_app({'settings': settings, 'start_scheduler': True})
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
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
