"""Through a real `python -m api` and raw HTTP (so Host, Origin and Referer are exactly what a browser on
another site would send): only the studio's own host names are served (DNS rebinding), cross-site and
form-like state changes are refused (CSRF), every response carries the security headers and
Server-Timing, and jobs do not see the studio's access token."""

import json
import time

import pytest

from tests.support.studio import StudioProcess, free_port, kill_jobs, train_form, wait_until, write_dataset

EVIL = 'rebind.attacker.example'


@pytest.fixture
def studio(data_root):
    s = StudioProcess(data_root, free_port(), allowed_hosts='studio.lan').start()
    yield s
    s.terminate()


def own(studio, **more):
    """The headers the UI sends from its own page."""
    return {'Host': f'127.0.0.1:{studio.port}', 'Origin': f'http://127.0.0.1:{studio.port}',
            'X-Requested-With': 'odeo', **more}


def error_of(body):
    return json.loads(body)['error']


def test_only_the_studios_own_host_names_are_served(studio):
    status, task = studio.call('POST', '/tasks', {})
    assert status == 201
    url = f'/api/v1/tasks/{task["id"]}'
    for host in (f'{EVIL}:{studio.port}', EVIL, f'127.0.0.1.{EVIL}', 'localhost.attacker.example'):
        status, _, body = studio.raw('DELETE', url + '?confirm=true', headers={'Host': host})
        assert status == 421, (host, status, body[:200])
        assert error_of(body)['code'] == 'misdirected' and error_of(body)['field'] == 'Host'
        assert studio.raw('GET', url, headers={'Host': host})[0] == 421
        assert studio.raw('GET', '/', headers={'Host': host})[0] == 421
    assert studio.call('GET', f'/tasks/{task["id"]}')[0] == 200               # still there
    for host in (f'127.0.0.1:{studio.port}', f'localhost:{studio.port}', 'LOCALHOST', f'[::1]:{studio.port}',
                 f'studio.lan:{studio.port}', 'studio.lan.'):
        assert studio.raw('GET', url, headers={'Host': host})[0] == 200, host


def test_cross_site_and_form_like_changes_are_refused(studio, data_root):
    status, task = studio.call('POST', '/tasks', {})
    tid = task['id']
    copy = f'/api/v1/tasks/{tid}/copy'
    before = len(studio.call('GET', '/tasks')[1]['tasks'])
    refused = [
        own(studio, Origin=f'http://{EVIL}'),                                   # another site's page
        own(studio, Origin='null'),                                             # a sandboxed / no-referrer page
        own(studio, Origin=f'http://127.0.0.1:{studio.port + 1}'),              # another port is another origin
        {'Host': f'127.0.0.1:{studio.port}', 'Referer': f'http://{EVIL}/page', 'X-Requested-With': 'odeo'},
        {'Host': f'127.0.0.1:{studio.port}'},                                   # a body-less simple POST
        {'Host': f'127.0.0.1:{studio.port}', 'Origin': f'http://127.0.0.1:{studio.port}'},
    ]
    for headers in refused:
        status, _, body = studio.raw('POST', copy, headers=headers)
        assert status == 403, (headers, status, body[:200])
        assert error_of(body)['code'] == 'forbidden'
    form = {'Host': f'127.0.0.1:{studio.port}', 'Content-Type': 'text/plain'}   # what a cross-site <form> can send
    assert studio.raw('POST', '/api/v1/tasks', b'{"name": "x"}', form)[0] == 403
    assert studio.raw('DELETE', f'/api/v1/tasks/{tid}?confirm=true', headers=form)[0] == 403
    studio.call('POST', '/gallery', {'name': 'g'})
    multipart = {'Host': f'127.0.0.1:{studio.port}', 'Content-Type': 'multipart/form-data; boundary=b'}
    payload = b'--b\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n\r\nx\r\n--b--\r\n'
    status, _, body = studio.raw('POST', '/api/v1/gallery/g/images', payload, multipart)
    assert status == 403 and error_of(body)['field'] == 'X-Requested-With'
    assert len(studio.call('GET', '/tasks')[1]['tasks']) == before             # nothing changed
    # the UI (same origin, its header) and scripts (a JSON body, no Origin) get through
    assert studio.raw('POST', copy, headers=own(studio))[0] == 201
    assert studio.raw('POST', copy, headers=own(studio, Origin=f'http://localhost:{studio.port}',
                                                   Host=f'localhost:{studio.port}'))[0] == 201
    assert studio.raw('POST', copy, b'{}', {'Content-Type': 'application/json'})[0] == 201
    assert studio.raw('POST', copy, headers={'X-Requested-With': 'script'})[0] == 201
    # reads are not state changes: a cross-site Referer on a GET (e.g. an <img>) is not refused
    assert studio.raw('GET', '/api/v1/tasks', headers={'Referer': f'http://{EVIL}/'})[0] == 200


def test_security_headers_and_server_timing_on_every_response(studio):
    for path, headers in [('/', {}), ('/static/js/api.js', {}), ('/api/v1/tasks', {}),
                          ('/api/v1/tasks/nope', {}), ('/api/v1/tasks', {'Host': EVIL})]:
        status, h, _ = studio.raw('GET', path, headers=headers)
        assert h['X-Content-Type-Options'] == 'nosniff', path
        assert h['Referrer-Policy'] == 'no-referrer', path
        csp = dict(d.strip().split(' ', 1) for d in h['Content-Security-Policy'].split(';'))
        assert csp['frame-ancestors'] == "'none'" and csp['default-src'] == "'self'", path
        assert "'unsafe-inline'" not in h['Content-Security-Policy'], path
        timing = dict(part.strip().split(';dur=') for part in h['Server-Timing'].split(','))
        assert 0 <= float(timing['cpu']) <= float(timing['app']), (path, timing)   # CPU time is part of it


def test_a_bearer_token_is_enough_and_jobs_never_see_it(data_root, tiny_model):
    write_dataset(data_root / 'datasets' / 'demo', behave={'step_time': 0.5})
    studio = StudioProcess(data_root, free_port(), token='s3cret-token').start()
    try:
        auth = {'Authorization': 'Bearer s3cret-token'}
        status, _, body = studio.raw('POST', '/api/v1/tasks', json.dumps({'form': train_form(tiny_model, 'demo',
                                     epochs=50)}).encode(), {**auth, 'Content-Type': 'application/json'})
        assert status == 201, body[:300]
        tid = json.loads(body)['id']
        # body-less with the token (no X-Requested-With): a token cannot be sent cross-site without a preflight
        status, _, body = studio.raw('POST', f'/api/v1/tasks/{tid}/start', headers=auth)
        assert status == 202, body[:300]
        job = json.loads(body)['id']
        assert studio.raw('POST', f'/api/v1/tasks/{tid}/copy?token=s3cret-token')[0] == 401
        assert studio.raw('POST', f'/api/v1/tasks/{tid}/copy', headers={'Authorization': 'Bearer wrong'})[0] == 401

        def pid():
            for rec in data_root.glob(f'runs/{tid}/{job}/job.json'):
                attempts = json.loads(rec.read_text()).get('attempts') or []
                return attempts and attempts[-1].get('pid')
        process = wait_until(pid, 30, what='the job to start')
        environ = wait_until(lambda: open(f'/proc/{process}/environ', 'rb').read(), 10, what='its environment')
        names = {kv.split(b'=', 1)[0] for kv in environ.split(b'\0') if kv}
        assert b'ODEO_DATA_ROOT' in names                     # it did inherit the studio's environment ...
        assert b'ODEO_TOKEN' not in names and b's3cret-token' not in environ      # ... but not the token
        studio.raw('POST', f'/api/v1/jobs/{job}/stop', b'{"save": false}', {**auth, 'Content-Type': 'application/json'})
        time.sleep(0.2)
    finally:
        studio.terminate()
        kill_jobs(data_root)
