"""Every Data area route keeps request paths inside their roots: dataset names, file paths, upload ids,
file names in bodies, symlinks out of a dataset; with a token, every route needs it."""

import os
import re

import pytest

from tests.support import mediagen
from tests.support.data import API, small_dataset

BAD_NAMES = ['..', '%2e%2e', '..%2f..%2fetc', '.studio', '.hidden..', '%2Fetc']
BAD_FILES = ['../clip.mp4', '..%2f..%2f..%2fetc%2fpasswd', '.studio/caption_origin.json', 'x/../../d/clip.mp4',
             '%2Fetc%2Fpasswd', '../../../../etc/passwd', 'cache/probe.json', 'clip.txt']
AREA = ('datasets.', 'uploads.', 'captions.', 'buckets.')


def _routes(app):
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith(AREA) and rule.arguments:
            for method in rule.methods - {'HEAD', 'OPTIONS'}:
                yield rule, method


def _url(rule, values):
    return re.sub(r'<(?:[^:<>]+:)?([^<>]+)>', lambda m: values[m.group(1)], rule.rule)


def assert_refused(r, what):
    assert r.status_code in (400, 404, 409), (what, r.status_code, r.data[:200])
    assert r.is_json and r.get_json()['error']['code'] in ('path_refused', 'not_found', 'bad_request', 'conflict'), what
    assert b'Traceback' not in r.data and b'do not serve' not in r.data


@pytest.fixture
def app(make_app, data_root, tmp_path):
    small_dataset(data_root / 'datasets' / 'd')
    (tmp_path / 'secret.txt').write_text('do not serve')
    return make_app()


def test_traversal_in_every_path_argument(app, data_root):
    c = app.test_client()
    routes = list(_routes(app))
    assert len(routes) >= 20
    for rule, method in routes:
        good = {'name': 'd', 'file': 'clip.mp4', 'upload_id': 'u20260101-000000-00000000', 'variant': 'wan2.1-t2v-1.3b',
                'item': 'i1'}
        for arg in rule.arguments:
            for bad in (BAD_NAMES if arg != 'file' else BAD_FILES):
                url = _url(rule, {**good, arg: bad})
                r = c.open(url, method=method, json={} if method != 'GET' else None)
                assert_refused(r, f'{method} {url}')
    assert (data_root / 'datasets' / 'd' / 'clip.txt').read_text() == 'a grey square slides right'


def test_file_names_in_bodies_stay_inside(app, data_root):
    c = app.test_client()
    for bad in BAD_FILES + ['/etc/passwd']:
        for route in ('trim', 'split'):
            r = c.post(f'{API}/datasets/d/{route}', json={'file': bad, 'start': 0, 'end': 1, 'dry_run': True})
            assert_refused(r, f'{route} {bad}')
        r = c.post(f'{API}/datasets/d/captions/bulk', json={'op': 'prefix', 'text': 'x', 'files': [bad], 'apply': True})
        assert r.status_code == 200 and r.get_json()['matched'] == 0
    for bad in ['../evil.mp4', 'a/b.mp4', '.hidden.mp4', '..', '/abs.mp4', 'x\n.mp4']:
        r = c.post(f'{API}/datasets/d/uploads', json={'filename': bad, 'size': 10})
        assert r.status_code == 400 and r.get_json()['error']['field'] == 'filename', bad
    assert sorted(p.name for p in (data_root / 'datasets' / 'd').iterdir() if not p.name.startswith('.')) == \
        ['cache', 'clip.mp4', 'clip.txt', 'still.png', 'wide.mp4', 'wide.txt']


def test_symlinks_out_of_a_dataset_are_refused(app, data_root, tmp_path):
    c = app.test_client()
    outside = tmp_path / 'outside'
    outside.mkdir()
    mediagen.video(outside / 'theirs.mp4', 48, 32, 16, 20)
    folder = data_root / 'datasets' / 'd'
    os.symlink(outside / 'theirs.mp4', folder / 'link.mp4')
    os.symlink(outside, folder / 'sub')
    for path in ('link.mp4', 'sub/theirs.mp4'):
        for kind in ('media', 'thumbnail', 'strip', 'preview', 'files'):
            assert_refused(c.get(f'{API}/datasets/d/{kind}/{path}'), f'{kind} {path}')
        assert_refused(c.put(f'{API}/datasets/d/captions/{path}', json={'text': 'x'}), path)
        assert_refused(c.post(f'{API}/datasets/d/trim', json={'file': path, 'start': 0, 'end': 1}), path)
    assert not (outside / 'theirs.txt').exists()
    os.symlink(outside, data_root / 'datasets' / 'away')
    assert_refused(c.get(f'{API}/datasets/away/files'), 'dataset symlink')


def test_every_data_route_needs_the_token(make_app, data_root):
    small_dataset(data_root / 'datasets' / 'd')
    app = make_app(token='s3cret')
    c = app.test_client()
    values = {'name': 'd', 'file': 'clip.mp4', 'upload_id': 'u1', 'variant': 'wan2.1-t2v-1.3b', 'item': 'i1'}
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith(AREA):
            continue
        for method in rule.methods - {'HEAD', 'OPTIONS'}:
            r = c.open(_url(rule, values), method=method, json={})
            assert r.status_code == 401, f'{method} {rule.rule}'
    assert c.get(f'{API}/datasets/d/media/clip.mp4?token=s3cret').status_code == 200        # <video src> works
    assert c.get(f'{API}/datasets/d/thumbnail/clip.mp4?token=s3cret').status_code == 200
    assert c.put(f'{API}/datasets/d/captions/clip.mp4?token=s3cret', json={'text': 'x'}).status_code == 401


def test_names_over_255_bytes_get_400_naming_the_field(app, data_root):
    c = app.test_client()
    long = 'é' * 130                                                    # 260 bytes, 130 characters
    cases = [('get', f'{API}/datasets/{long}', None, 'dataset'),
             ('get', f'{API}/datasets/d/files/{long}.mp4', None, 'file'),
             ('delete', f'{API}/datasets/d/files/{long}.mp4?confirm=true', None, 'file'),
             ('get', f'{API}/datasets/d/media/{long}.mp4', None, 'file'),
             ('get', f'{API}/datasets/d/thumbnail/{long}.mp4', None, 'file'),
             ('get', f'{API}/datasets/d/preview/sub/{long}.mp4', None, 'file'),
             ('put', f'{API}/datasets/d/captions/{long}.mp4', {'text': 'x'}, 'file'),
             ('post', f'{API}/datasets/d/trim', {'file': f'{long}.mp4', 'start': 0, 'end': 1}, 'file'),
             ('post', f'{API}/datasets/d/split', {'file': f'{long}.mp4'}, 'file'),
             ('post', f'{API}/datasets', {'name': long}, 'name'),
             ('post', f'{API}/datasets/d/uploads', {'filename': f'{long}.mp4', 'size': 1}, 'filename')]
    for method, url, body, field in cases:
        r = getattr(c, method)(url, json=body)
        assert r.status_code == 400, (url, r.status_code, r.data[:200])
        assert r.get_json()['error']['field'] == field, url
    c.post(f'{API}/gallery', json={'name': 'g'})
    for method, url, body in [('get', f'{API}/gallery/g/images/{long}.png', None),
                              ('patch', f'{API}/gallery/g/images/{long}.png', {'name': 'b.png'}),
                              ('delete', f'{API}/gallery/g/images/{long}.png', None)]:
        r = getattr(c, method)(url, json=body)
        assert r.status_code == 400 and r.get_json()['error']['field'] == 'image', url


def test_a_lone_surrogate_in_a_caption_gets_400(app, data_root):
    c = app.test_client()
    r = c.put(f'{API}/datasets/d/captions/clip.mp4', data='{"text": "a \\ud800 b"}', content_type='application/json')
    assert r.status_code == 400 and r.get_json()['error']['field'] == 'text'
    assert c.put(f'{API}/datasets/d/captions/clip.mp4', json={'text': 'a \U0001F600 b'}).status_code == 200


def test_a_trimmed_clip_of_a_long_named_video_gets_a_name_that_fits(app, data_root):
    c = app.test_client()
    name = 'v' * 250 + '.mp4'                                           # 254 bytes: a valid name
    mediagen.video(data_root / 'datasets' / 'd' / 'short.mp4', 64, 48, 16, 32)
    (data_root / 'datasets' / 'd' / 'short.mp4').rename(data_root / 'datasets' / 'd' / name)
    r = c.post(f'{API}/datasets/d/trim', json={'file': name, 'start': 0.5, 'end': 1.5})
    assert r.status_code == 201, r.data[:300]
    out = r.get_json()['file']
    assert len(out.encode()) <= 255 and out.startswith('v' * 100) and out.endswith('_0.50-1.50s.mp4')
    assert (data_root / 'datasets' / 'd' / out).is_file()
