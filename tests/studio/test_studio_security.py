"""Paths and ids from requests stay inside their roots; the token guards the API; bodies are bounded;
errors are JSON with a code and never a traceback."""

import os
import subprocess
import sys

import pytest

from tests.support.studio import REPO, train_form, wait_until, write_dataset

TRAVERSALS = ['..', '%2e%2e', '..%2f..%2fetc', '%2e%2e%2f%2e%2e', '.hidden..', 'a/../../b']


@pytest.fixture
def app_with_job(make_app, data_root, tiny_model):
    """An app with one finished job (a run directory with files to download)."""
    write_dataset(data_root / 'datasets' / 'demo')
    app = make_app()
    c, studio = app.test_client(), app.extensions['odeo']
    task = c.post('/api/v1/tasks', json={'form': train_form(tiny_model, 'demo', epochs=1)}).get_json()['id']
    job = c.post(f'/api/v1/tasks/{task}/start', json={}).get_json()['id']
    wait_until(lambda: studio.jobs.get(job)['state'] == 'done', 20, studio.scheduler.tick, what='the job')
    return app, task, job


def assert_refused(r):
    assert r.status_code in (400, 404), (r.status_code, r.data[:200])
    assert r.is_json and r.get_json()['error']['code'] in ('path_refused', 'not_found')
    assert b'Traceback' not in r.data


def test_traversal_in_every_id_and_path(app_with_job, tmp_path):
    app, task, job = app_with_job
    c = app.test_client()
    secret = tmp_path / 'secret.txt'
    secret.write_text('do not serve')
    for bad in TRAVERSALS + [str(secret).lstrip('/')]:
        for method, url in [('get', f'/api/v1/tasks/{bad}'), ('patch', f'/api/v1/tasks/{bad}'),
                            ('delete', f'/api/v1/tasks/{bad}?confirm=true'), ('post', f'/api/v1/tasks/{bad}/copy'),
                            ('post', f'/api/v1/tasks/{bad}/validate'), ('post', f'/api/v1/tasks/{bad}/start'),
                            ('get', f'/api/v1/tasks/{bad}/jobs'), ('get', f'/api/v1/jobs/{bad}'),
                            ('post', f'/api/v1/jobs/{bad}/stop'), ('post', f'/api/v1/jobs/{bad}/resume'),
                            ('get', f'/api/v1/jobs/{bad}/log'), ('get', f'/api/v1/jobs/{bad}/metrics'),
                            ('get', f'/api/v1/jobs/{bad}/progress'), ('get', f'/api/v1/jobs/{bad}/artifacts'),
                            ('post', f'/api/v1/queue/{bad}/move'), ('get', f'/api/v1/datasets/{bad}'),
                            ('get', f'/api/v1/jobs/{job}/files/{bad}'),
                            ('get', f'/api/v1/jobs/{bad}/files/config.toml')]:
            r = getattr(c, method)(url, json={} if method != 'get' else None)
            assert_refused(r)
    for rel in ['../../task.json', '%2e%2e/%2e%2e/task.json', '/etc/passwd', '..%2f..%2f..%2f' + str(secret)]:
        assert_refused(c.get(f'/api/v1/jobs/{job}/files/{rel}'))
    for ckpt in ['../step2', '/etc', '..%2fx', 'step1/../../..']:
        assert_refused(c.post(f'/api/v1/jobs/{job}/restart', json={'checkpoint': ckpt}))


def test_symlinks_out_of_the_root_are_refused(app_with_job, tmp_path, data_root):
    app, task, job = app_with_job
    c = app.test_client()
    outside = tmp_path / 'outside'
    outside.mkdir()
    (outside / 'loot.txt').write_text('secret')
    run = data_root / app.extensions['odeo'].jobs.get(job)['run_dir']
    os.symlink(outside, run / 'link')
    os.symlink(outside / 'loot.txt', run / 'loot.txt')
    assert_refused(c.get(f'/api/v1/jobs/{job}/files/link/loot.txt'))
    assert_refused(c.get(f'/api/v1/jobs/{job}/files/loot.txt'))
    os.symlink(outside, run / 'checkpoints' / 'evil')
    assert_refused(c.post(f'/api/v1/jobs/{job}/restart', json={'checkpoint': 'evil'}))
    os.symlink(outside, data_root / 'datasets' / 'sneaky')
    assert_refused(c.get('/api/v1/datasets/sneaky'))
    r = c.patch(f'/api/v1/tasks/{task}', json={'form': {'dataset': 'sneaky'}})
    assert r.status_code == 400 and r.get_json()['error']['field'] == 'dataset'
    assert c.get(f'/api/v1/jobs/{job}/files/config.toml').status_code == 200


def test_token_is_required_when_set(make_app, tiny_model):
    app = make_app(token='s3cret-token')
    c = app.test_client()
    r = c.get('/api/v1/tasks')
    assert r.status_code == 401 and r.get_json()['error']['code'] == 'unauthorized'
    assert r.headers['WWW-Authenticate'] == 'Bearer'
    assert c.get('/api/v1/tasks', headers={'Authorization': 'Bearer wrong'}).status_code == 401
    assert c.get('/api/v1/tasks', headers={'Authorization': 'Bearer s3cret-token'}).status_code == 200
    assert c.get('/api/v1/openapi.json?token=s3cret-token').status_code == 200      # GET: query token works
    assert c.post('/api/v1/tasks?token=s3cret-token', json={}).status_code == 401   # not for changes
    assert c.post('/api/v1/tasks', json={}, headers={'Authorization': 'Bearer s3cret-token'}).status_code == 201
    assert c.get('/').status_code == 200                                            # the page itself is public


def test_no_token_on_a_public_address_refuses_to_start(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith('ODEO_')}
    r = subprocess.run([sys.executable, '-m', 'api', '--host', '0.0.0.0', '--port', '1', '--data', str(tmp_path)],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and 'without an access token' in r.stderr
    assert not (tmp_path / 'runs').exists()


def test_oversized_bodies_get_413(make_app):
    c = make_app(max_request_bytes=4096).test_client()
    big = {'name': 'x', 'toml': {'main': 'a' * 10000, 'dataset': ''}}
    r = c.post('/api/v1/tasks', json=big)
    assert r.status_code == 413 and r.get_json()['error']['code'] == 'too_large'
    task = c.post('/api/v1/tasks', json={}).get_json()['id']
    assert c.patch(f'/api/v1/tasks/{task}', json={'toml': {'main': '#' * 5000}}).status_code == 413


def test_errors_are_json_without_tracebacks(make_app, monkeypatch):
    app = make_app()
    c = app.test_client()
    r = c.post('/api/v1/tasks', data='{not json', content_type='application/json')
    assert r.status_code == 400 and r.get_json()['error']['field'] == 'body'
    assert c.put('/api/v1/tasks').get_json()['error']['code'] == 'method_not_allowed'
    assert c.get('/api/v1/jobs?state=bogus').get_json()['error']['field'] == 'state'
    assert c.post('/api/v1/tasks', json={'name': 5}).get_json()['error']['field'] == 'name'

    def boom(*a, **k):
        raise RuntimeError('/secret/path/in/a/traceback')
    monkeypatch.setattr(app.extensions['odeo'].tasks, 'all', boom)
    r = c.get('/api/v1/tasks')
    assert r.status_code == 500 and r.get_json()['error']['code'] == 'internal'
    assert b'/secret/path' not in r.data and b'Traceback' not in r.data


def test_deep_json_and_lone_surrogates_get_400_naming_the_field(make_app):
    c = make_app().test_client()
    for deep in ('[' * 50000 + ']' * 50000, '{"a":' * 50000 + '1' + '}' * 50000):
        r = c.post('/api/v1/tasks', data=deep, content_type='application/json')
        assert r.status_code == 400 and r.get_json()['error']['field'] == 'body'
    r = c.post('/api/v1/tasks', data='{"name": "a\\ud800b"}', content_type='application/json')
    assert r.status_code == 400 and r.get_json()['error']['field'] == 'name'
    task = c.post('/api/v1/tasks', json={}).get_json()['id']
    r = c.patch(f'/api/v1/tasks/{task}', data='{"name": "x\\udfff"}', content_type='application/json')
    assert r.status_code == 400 and r.get_json()['error']['field'] == 'name'
    r = c.patch(f'/api/v1/tasks/{task}', data='{"form": {"dataset": "\\ud83d"}}', content_type='application/json')
    assert r.status_code == 400 and r.get_json()['error']['field'] == 'form.dataset'
    r = c.patch(f'/api/v1/tasks/{task}', data='{"name": "ok \\ud83d\\ude00"}', content_type='application/json')
    assert r.status_code == 200 and r.get_json()['name'] == 'ok \U0001F600'     # a valid pair is fine
    assert c.get('/api/v1/tasks').status_code == 200


def test_download_name_with_cr_lf_is_refused(app_with_job):
    app, task, job = app_with_job
    c = app.test_client()
    for bad in ('a%0d%0aSet-Cookie:%20x=1', 'x%0a.toml', 'x%0d'):
        r = c.get(f'/api/v1/jobs/{job}/files/config.toml?download={bad}')
        assert r.status_code == 400 and r.get_json()['error']['field'] == 'download', bad
    r = c.get(f'/api/v1/jobs/{job}/files/config.toml?download=mine.toml')
    assert r.status_code == 200 and 'mine.toml' in r.headers['Content-Disposition']
    long = 'a' * 300
    r = c.get(f'/api/v1/jobs/{job}/files/{long}')
    assert r.status_code == 400 and r.get_json()['error']['field'] == 'path'


def test_task_ids_are_never_reused(make_app, data_root):
    app = make_app()
    c = app.test_client()
    first = c.post('/api/v1/tasks', json={}).get_json()['id']
    prefix = first.rsplit('-', 1)[0]
    assert c.delete(f'/api/v1/tasks/{first}?confirm=true').status_code in (200, 202)
    app.extensions['odeo'].scheduler.tick()
    second = c.post('/api/v1/tasks', json={}).get_json()['id']
    assert second == f'{prefix}-02'                          # the deleted task's -01 is not given again
    app.extensions['odeo'].shutdown()
    c = make_app().test_client()                                # a restart on the same data root
    c.delete(f'/api/v1/tasks/{second}?confirm=true')
    assert c.post('/api/v1/tasks', json={}).get_json()['id'] == f'{prefix}-03'
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda _: c.post('/api/v1/tasks', json={}).get_json()['id'], range(16)))
    assert len(set(ids)) == 16 and all(int(i.rsplit('-', 1)[1]) > 3 for i in ids)
