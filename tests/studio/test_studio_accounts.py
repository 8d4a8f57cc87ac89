"""Accounts mode (auth = 'accounts'): every state-changing route has an entry in api/permissions.py and is
refused to viewers, to members on another member's objects and to callers without a session or token (a
walk over the OpenAPI document); logging in and out through the real server, the cookie's flags,
throttling, personal tokens, the audit log, the per-user GPU limit, `--create-admin`, and single-user mode
left as it was."""

import json
import os
import re
import subprocess
import sys
import time

import pytest

from api.permissions import ADMIN, PUBLIC, RULES, SIGNED_IN
from api.security import CHANGES
from api.services.accounts.acting import acting_as, done
from api.services.jobs.store import new_job, new_job_id
from tests.support.accounts import PASSWORD, AccountsStudio, make_users
from tests.support.studio import REPO, free_port, kill_jobs, train_form, wait_until, write_dataset


def accounts_app(make_app, **settings):
    app = make_app(auth='accounts', **settings)
    users = app.extensions['odeo_accounts'].users
    for name, role in (('root', 'admin'), ('alice', 'member'), ('bob', 'member'), ('vic', 'viewer')):
        users.create(name, PASSWORD, role)
    return app


def client(app, name=None):
    c = app.test_client()
    if name:
        r = c.post('/api/v1/login', json={'name': name, 'password': PASSWORD})
        assert r.status_code == 200, r.get_json()
    return c


def test_every_state_changing_route_has_an_entry_and_one_without_is_refused(make_app):
    app = accounts_app(make_app)
    missing = sorted(r.endpoint for r in app.url_map.iter_rules()
                     if r.rule.startswith('/api/') and r.methods & CHANGES and r.endpoint not in RULES)
    assert missing == [], f'routes without an entry in api/permissions.py: {missing}'
    app.add_url_rule('/api/v1/unlisted', 'unlisted', lambda: {'done': True}, methods=['POST'])
    r = client(app, 'root').post('/api/v1/unlisted', json={})
    assert r.status_code == 403 and 'no entry in the permissions table' in r.get_json()['error']['message']


def fill(path, objects):
    """An OpenAPI path with its parameters filled by alice's objects."""
    def value(m):
        name = m.group(1)
        if name == 'name':
            return ('x.png' if '/images/' in path else 'tiny' if path.startswith('/api/v1/models/')
                    else objects['dataset'])
        return objects[name]
    return re.sub(r'{(\w+)}', value, path)


def test_openapi_walk_viewer_other_member_and_nobody_are_refused(make_app, data_root):
    app = accounts_app(make_app)
    studio = app.extensions['odeo']
    alice, bob, vic, root, nobody = (client(app, n) for n in ('alice', 'bob', 'vic', 'root', None))
    task = alice.post('/api/v1/tasks', json={}).get_json()
    assert task['owner'] == 'alice'
    assert alice.post('/api/v1/datasets', json={'name': 'adata'}).status_code == 201
    write_dataset(data_root / 'datasets' / 'adata')
    assert alice.post('/api/v1/gallery', json={'name': 'afolder'}).status_code == 201
    upload = alice.post('/api/v1/datasets/adata/uploads', json={'filename': 'v.png', 'size': 10}).get_json()
    token = acting_as('alice')
    try:
        jid = new_job_id()
        studio.paths.job_dir(task['id'], jid).mkdir(parents=True)
        job = new_job(jid, task['id'], f'runs/{task["id"]}/{jid}', {'gpus': 1, 'gpu_ids': None}, {'action': 'start'})
    finally:
        done(token)
    studio.jobs.save({**job, 'state': 'stopped'})
    assert studio.jobs.get(jid)['owner'] == 'alice'
    objects = {'task_id': task['id'], 'job_id': jid, 'dataset': 'adata', 'folder': 'afolder', 'file': 'img0.png',
               'upload_id': upload['id'], 'token_id': '0badc0de', 'user': 'alice'}

    spec = vic.get('/api/v1/openapi.json').get_json()
    adapter = app.url_map.bind('localhost')
    walked = set()
    for path, ops in spec['paths'].items():
        for method in ops:
            if method.upper() not in CHANGES:
                continue
            url = fill(path, objects)
            endpoint = adapter.match(url.split('?')[0], method.upper())[0]
            rule = RULES[endpoint]
            walked.add(endpoint)
            call = lambda c: getattr(c, method)(url, json={})             # noqa: E731
            r = call(nobody)
            if rule == PUBLIC:
                assert r.status_code != 401, endpoint
            else:
                assert r.status_code == 401, (endpoint, r.status_code, r.get_json())
            if rule in (PUBLIC, SIGNED_IN):     # logging in, and one's own account: viewers too (not called
                continue                        # here: logging out would end the walk's sessions)
            r = call(vic)
            assert r.status_code == 403 and 'viewer' in r.get_json()['error']['message'], (endpoint, r.get_json())
            r = call(bob)
            if rule == ADMIN or rule[0] == 'owner':
                assert r.status_code == 403, (endpoint, r.status_code, r.get_json())
                if rule != ADMIN:
                    assert 'belongs to alice' in r.get_json()['error']['message'], endpoint
    assert walked == {e for e in RULES if e != 'accounts.whoami' and not e.endswith(('list_users', 'audit'))}
    assert studio.tasks.get(task['id'])['name'] == task['name']                   # nothing refused got through

    # the owner and admins may; a record without an owner is the admins' alone
    assert alice.patch(f'/api/v1/tasks/{task["id"]}', json={'name': 'mine'}).status_code == 200
    assert root.patch(f'/api/v1/tasks/{task["id"]}', json={'name': 'admins too'}).status_code == 200
    assert bob.post('/api/v1/tasks', json={}).status_code == 201
    legacy = studio.tasks.create()
    assert legacy['owner'] is None
    r = alice.patch(f'/api/v1/tasks/{legacy["id"]}', json={'name': 'x'})
    assert r.status_code == 403 and 'belongs to no one' in r.get_json()['error']['message']
    assert root.patch(f'/api/v1/tasks/{legacy["id"]}', json={'name': 'x'}).status_code == 200
    assert vic.get('/api/v1/tasks').status_code == 200 and vic.get(f'/api/v1/jobs/{jid}').status_code == 200


def test_login_cookie_throttle_tokens_and_audit_through_the_server(tmp_path, tiny_model, data_root):
    write_dataset(data_root / 'datasets' / 'demo', behave={'step_time': 0.2})
    users = make_users(data_root, root='admin', alice='member', vic='viewer')
    studio = AccountsStudio(data_root, free_port()).start()
    try:
        anon = studio.session()
        assert anon.call('GET', '/whoami')[2] == {'auth': 'accounts', 'user': None, 'max_gpus_per_user': 0}
        assert anon.call('GET', '/tasks')[0] == 401
        page = anon.opener.open(studio.base.replace('/api/v1', '/')).read().decode()
        assert 'id="login"' in page and 'js/login.js' in page and '<script>' not in page

        alice = studio.session()
        cookie = alice.login('alice')['Set-Cookie']
        assert 'HttpOnly' in cookie and 'SameSite=Strict' in cookie and 'Secure' not in cookie
        assert alice.call('GET', '/whoami')[2]['user'] == {'name': 'alice', 'role': 'member'}

        # login throttling: per (name, address), exponential back-off, 429 with Retry-After
        for _ in range(3):
            assert anon.call('POST', '/login', {'name': 'vic', 'password': 'wrong-password'})[0] == 401
        status, hdrs, out = anon.call('POST', '/login', {'name': 'vic', 'password': PASSWORD})
        assert status == 429 and int(hdrs['Retry-After']) >= 1 and out['error']['code'] == 'throttled'
        time.sleep(int(hdrs['Retry-After']))
        assert anon.call('POST', '/login', {'name': 'vic', 'password': PASSWORD})[0] == 200
        assert anon.call('POST', '/login', {'name': 'alice', 'password': PASSWORD})[0] == 200   # others unaffected

        # personal tokens: made, used without a cookie or X-Requested-With, stored hashed, revoked
        status, _, made = alice.call('POST', '/tokens', {'name': 'script'})
        assert status == 201 and made['secret'].startswith(f'odeo_{made["token"]["id"]}_')
        stored = (data_root / 'users' / 'alice.json').read_text()
        assert made['secret'] not in stored and made['secret'].split('_', 2)[2] not in stored
        script = studio.session()
        bearer = {'Authorization': f'Bearer {made["secret"]}', 'X-Requested-With': '', 'Content-Type': 'text/plain'}
        status, _, task = script.call('POST', '/tasks', None, headers=bearer)
        assert status == 201 and task['owner'] == 'alice'
        assert alice.call('GET', '/tokens')[2]['tokens'] == [made['token']]
        assert alice.call('DELETE', f'/tokens/{made["token"]["id"]}')[0] == 200
        assert script.call('GET', '/tasks', headers=bearer)[0] == 401
        # a cookie alone does not pass the X-Requested-With rule
        assert alice.call('POST', '/tasks', None, headers={'X-Requested-With': '', 'Content-Type': 'text/plain'})[0] == 403

        # create, start, stop, download, delete: each an audit line with the address
        s, _, t = alice.call('PATCH', f'/tasks/{task["id"]}', {'form': train_form(tiny_model, 'demo', epochs=100)})
        assert s == 200, t
        s, _, job = alice.call('POST', f'/tasks/{task["id"]}/start', {})
        assert s == 202, job
        wait_until(lambda: alice.call('GET', f'/jobs/{job["id"]}')[2]['state'] == 'running', 30, what='running')
        assert alice.call('POST', f'/jobs/{job["id"]}/stop', {})[0] == 202
        wait_until(lambda: alice.call('GET', f'/jobs/{job["id"]}')[2]['state'] in ('stopped', 'done'), 30, what='stop')
        s, hdrs, _ = alice.call('GET', f'/jobs/{job["id"]}/files/config.toml?download=mine.toml', raw=True)
        assert s == 200 and hdrs['Content-Disposition'].startswith('attachment')
        assert alice.call('DELETE', f'/tasks/{task["id"]}?confirm=true')[0] in (200, 202)
        lines = [json.loads(x) for x in (data_root / 'audit.jsonl').read_text().splitlines()]
        mine = [(x['user'], x['action'], x['status']) for x in lines if x['user'] == 'alice']
        for action, code in (('tasks.create_task', 201), ('tasks.start_task', 202), ('jobs.stop_job', 202),
                             ('download', 200), ('tasks.delete_task', 200)):
            assert ('alice', action, code) in mine, (action, mine)
        assert all(x['address'] == '127.0.0.1' for x in lines)
        assert ('vic', 'accounts.login', 429) in [(x['user'], x['action'], x['status']) for x in lines]
        assert alice.call('GET', '/audit')[0] == 403
        root = studio.session()
        root.login('root')
        shown = root.call('GET', '/audit?user=alice&action=download')[2]['lines']
        assert shown and shown[0]['object']['job_id'] == job['id']

        # a password change (or logging out everywhere) ends the other sessions; logging out ends this one
        other = studio.session()
        other.login('alice')
        s, _, _ = alice.call('POST', '/account/password', {'old_password': PASSWORD, 'password': 'a new secret 2'})
        assert s == 200 and other.call('GET', '/tasks')[0] == 401 and alice.call('GET', '/tasks')[0] == 200
        assert alice.call('POST', '/logout', {})[0] == 200 and alice.call('GET', '/tasks')[0] == 401
        assert root.call('PATCH', '/users/vic', {'disabled': True})[0] == 200
        assert anon.call('GET', '/tasks')[0] == 401                        # vic's session ended with the account
        assert root.call('PATCH', '/users/root', {'role': 'member'})[0] == 409     # the last admin stays
        assert users.find('alice') is not None
    finally:
        studio.terminate()
        kill_jobs(data_root)


def test_secure_cookie_behind_tls(data_root):
    make_users(data_root, alice='member')
    studio = AccountsStudio(data_root, free_port(), behind_tls='true').start()
    try:
        cookie = studio.session().login('alice')['Set-Cookie']
        assert 'Secure' in cookie and 'HttpOnly' in cookie and 'SameSite=Strict' in cookie
    finally:
        studio.terminate()


def test_per_user_gpu_limit_keeps_the_next_job_queued_with_the_reason(make_app, data_root, tiny_model):
    write_dataset(data_root / 'datasets' / 'demo', behave={'step_time': 0.2})
    app = accounts_app(make_app, max_gpus_per_user=1, cpu_slots=3)
    studio = app.extensions['odeo']
    alice, bob = client(app, 'alice'), client(app, 'bob')

    def start(c):
        tid = c.post('/api/v1/tasks', json={'form': train_form(tiny_model, 'demo', epochs=100)}).get_json()['id']
        r = c.post(f'/api/v1/tasks/{tid}/start', json={})
        assert r.status_code == 202, r.get_json()
        return r.get_json()['id']
    first, second = start(alice), start(alice)
    studio.scheduler.tick()
    third = start(bob)
    studio.scheduler.tick()
    assert studio.jobs.get(first)['state'] == 'running' and studio.jobs.get(first)['owner'] == 'alice'
    assert studio.jobs.get(second)['state'] == 'queued'
    assert studio.jobs.get(third)['state'] == 'running'             # alice's wait holds up nobody else
    queue = alice.get('/api/v1/queue').get_json()['jobs']
    assert [(q['job_id'], q['waiting_reason'], q['owner']) for q in queue] == [(second, 'user alice holds 1 of 1 GPUs', 'alice')]
    too_big = alice.post('/api/v1/tasks', json={'form': train_form(tiny_model, 'demo', gpus=2)}).get_json()['id']
    big = alice.post(f'/api/v1/tasks/{too_big}/start', json={}).get_json()['id']
    studio.scheduler.tick()
    assert studio.jobs.get(big)['state'] == 'failed' and 'at most 1' in studio.jobs.get(big)['message']
    alice.post(f'/api/v1/jobs/{first}/stop', json={})
    wait_until(lambda: studio.jobs.get(second)['state'] == 'running', 30, studio.scheduler.tick, what='the second job')


def test_single_user_mode_is_unchanged(make_app, data_root):
    c = make_app().test_client()
    assert c.get('/api/v1/whoami').get_json() == {'auth': 'single', 'user': None, 'max_gpus_per_user': 0}
    assert c.post('/api/v1/login', json={'name': 'a', 'password': 'b' * 8}).status_code == 404
    task = c.post('/api/v1/tasks', json={}).get_json()
    assert task['owner'] is None and c.patch(f'/api/v1/tasks/{task["id"]}', json={'name': 'n'}).status_code == 200
    assert 'id="nav"' in c.get('/').get_data(as_text=True)
    assert 'Set-Cookie' not in c.get('/api/v1/tasks').headers
    assert not (data_root / 'users').exists() and not (data_root / 'audit.jsonl').exists()
    assert not (data_root / 'secret_key').exists()


def test_create_admin_from_the_command_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith('ODEO_')}
    run = lambda *args, **extra: subprocess.run([sys.executable, '-m', 'api', '--data', str(tmp_path), *args],  # noqa: E731
                                                cwd=REPO, env={**env, **extra}, capture_output=True, text=True,
                                                timeout=60, stdin=subprocess.DEVNULL)
    r = run('--create-admin', 'boss', ODEO_ADMIN_PASSWORD='a long password')
    assert r.returncode == 0, r.stderr
    rec = json.loads((tmp_path / 'users' / 'boss.json').read_text())
    assert rec['role'] == 'admin' and 'a long password' not in json.dumps(rec)
    assert (tmp_path / 'users' / 'boss.json').stat().st_mode & 0o077 == 0
    assert run('--create-admin', 'boss', ODEO_ADMIN_PASSWORD='a long password').returncode == 2     # exists
    r = run('--create-admin', 'other')                                  # no password and no terminal
    assert r.returncode == 2 and 'ODEO_ADMIN_PASSWORD' in r.stderr
    r = run('--port', '1', ODEO_AUTH='accounts', ODEO_TOKEN='t')
    assert r.returncode == 2 and 'replaces the shared access token' in r.stderr


@pytest.mark.parametrize('bad', ['', 'Root', '../x', 'a' * 40])
def test_user_names_are_checked(make_app, bad):
    app = accounts_app(make_app)
    r = client(app, 'root').post('/api/v1/users', json={'name': bad, 'password': PASSWORD})
    assert r.status_code == 400 and r.get_json()['error']['field'] == 'name'
