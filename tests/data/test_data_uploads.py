"""Uploads stream to disk in chunks, survive a dropped connection (the client asks how much the server
has and continues), never overwrite silently, and keep only media we can read (checked by content)."""

import http.client
import json
import socket
import time

import psutil
import pytest

from tests.support import mediagen
from tests.support.data import API, raw_avi, sha256
from tests.support.studio import StudioProcess, free_port
from utils.media import probe

CHUNK = 8 * 1024 * 1024


def _json(conn, method, path, body=None, headers=None):
    conn.request(method, API + path, body=body, headers=headers or {})
    r = conn.getresponse()
    return r.status, json.loads(r.read() or b'null')


def _put(conn, upload_id, offset, data):
    return _json(conn, 'PUT', f'/uploads/{upload_id}?offset={offset}', data,
                 {'Content-Type': 'application/octet-stream', 'Content-Length': str(len(data)),
                  'X-Requested-With': 'test'})          # a script's state change needs it (or JSON, or a token)


@pytest.mark.slow
def test_large_upload_resumes_after_a_dropped_connection(tmp_path, data_root):
    """A 221 MB (211 MiB) video through the real server: chunks, a connection cut mid-chunk, resume, same bytes."""
    src = raw_avi(tmp_path / 'big.avi', 960)                    # 320x240 bgr24, 960 frames: 221 MB
    size = src.stat().st_size
    assert size > 200 * 1024 * 1024
    (data_root / 'datasets' / 'beach').mkdir()
    studio = StudioProcess(data_root, free_port(), upload_chunk_bytes=CHUNK).start()
    try:
        conn = http.client.HTTPConnection('127.0.0.1', studio.port, timeout=60)
        body = json.dumps({'filename': 'big.avi', 'size': size, 'client_key': f'big.avi|{size}|1'})
        status, up = _json(conn, 'POST', '/datasets/beach/uploads', body, {'Content-Type': 'application/json'})
        assert status == 201 and up['received'] == 0 and up['chunk_bytes'] == CHUNK
        rss = psutil.Process(studio.proc.pid)
        before = rss.memory_info().rss
        peak = before
        with open(src, 'rb') as f:
            for _ in range(10):                                  # 80 MB, then the connection drops
                status, up = _put(conn, up['id'], up['received'], f.read(CHUNK))
                assert status == 200, up
                peak = max(peak, rss.memory_info().rss)
            sent = up['received']
            cut = socket.create_connection(('127.0.0.1', studio.port))
            cut.sendall(f'PUT {API}/uploads/{up["id"]}?offset={sent} HTTP/1.1\r\nHost: x\r\n'
                        f'Content-Type: application/octet-stream\r\nContent-Length: {CHUNK}\r\n\r\n'.encode())
            cut.sendall(f.read(CHUNK // 2))
            cut.close()
            time.sleep(0.5)
            # the client comes back: the same client_key finds the upload; it continues from what the server has
            conn = http.client.HTTPConnection('127.0.0.1', studio.port, timeout=60)
            status, again = _json(conn, 'POST', '/datasets/beach/uploads', body, {'Content-Type': 'application/json'})
            assert status == 200 and again['id'] == up['id']
            assert sent <= again['received'] <= sent + CHUNK // 2
            f.seek(again['received'])
            up = again
            while up['state'] == 'uploading':
                status, up = _put(conn, up['id'], up['received'], f.read(CHUNK))
                assert status == 200, up
                peak = max(peak, rss.memory_info().rss)
        assert up['state'] == 'done' and up['file'] == 'big.avi' and up['received'] == size
        stored = data_root / 'datasets' / 'beach' / 'big.avi'
        assert stored.stat().st_size == size and sha256(stored) == sha256(src)
        assert probe(stored).frames == 960
        assert peak - before < 100 * 1024 * 1024, f'studio grew by {(peak - before) >> 20} MiB during the upload'
        assert not list((data_root / 'uploads' / up['id']).glob('data*'))
    finally:
        studio.kill()


def _upload(c, dataset, name, data, **extra):
    r = c.post(f'{API}/datasets/{dataset}/uploads', json={'filename': name, 'size': len(data), **extra})
    assert r.status_code in (200, 201), r.get_json()
    up = r.get_json()
    return c.put(f'{API}/uploads/{up["id"]}?offset=0', data=data, content_type='application/octet-stream')


def test_name_clash_gets_a_suffix_unless_replace_is_asked(make_app, data_root, tmp_path):
    c = make_app().test_client()
    folder = data_root / 'datasets' / 'd'
    folder.mkdir()
    first = mediagen.video(tmp_path / 'a.mp4', 48, 32, 16, 20).read_bytes()
    second = mediagen.video(tmp_path / 'b.mp4', 64, 48, 16, 30).read_bytes()
    assert _upload(c, 'd', 'clip.mp4', first).get_json()['file'] == 'clip.mp4'
    mediagen.caption(folder / 'clip.mp4', 'kept')
    r = _upload(c, 'd', 'clip.mp4', second)
    assert r.get_json()['file'] == 'clip (1).mp4'
    assert (folder / 'clip.mp4').read_bytes() == first and (folder / 'clip (1).mp4').read_bytes() == second
    r = _upload(c, 'd', 'clip.mp4', second, replace=True)
    assert r.get_json()['file'] == 'clip.mp4' and (folder / 'clip.mp4').read_bytes() == second
    assert (folder / 'clip.txt').read_text() == 'kept'
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith('.')) == ['clip (1).mp4', 'clip.mp4', 'clip.txt']


def test_a_file_that_is_not_media_is_rejected_and_removed(make_app, data_root, tmp_path):
    c = make_app().test_client()
    folder = data_root / 'datasets' / 'd'
    folder.mkdir()
    r = _upload(c, 'd', 'holiday.mp4', b'these are my holiday notes, not a video\n' * 20)
    err = r.get_json()['error']
    assert r.status_code == 422 and err['field'] == 'file'
    assert 'holiday.mp4' in err['message'] and 'text file' in err['message'] and 'removed' in err['message']
    real = mediagen.video(tmp_path / 'v.mp4', 48, 32, 16, 20).read_bytes()
    r = _upload(c, 'd', 'cut.mp4', real[:len(real) // 2])                  # a download that stopped half-way
    assert r.status_code == 422 and 'truncated' in r.get_json()['error']['message']
    assert not any(p for p in folder.iterdir() if not p.name.startswith('.'))
    ups = c.get(f'{API}/datasets/d/uploads').get_json()['uploads']
    assert {u['state'] for u in ups} == {'rejected'} and all(u['received'] == 0 for u in ups)
    assert not list((data_root / 'uploads').glob('*/data*'))
    r = c.post(f'{API}/datasets/d/uploads', json={'filename': 'notes.txt', 'size': 10})
    assert r.status_code == 422 and r.get_json()['error']['field'] == 'filename'


def test_sizes_offsets_and_expiry(make_app, data_root, tmp_path):
    c = make_app(max_upload_bytes=10_000, upload_expiry_s=0.3).test_client()
    (data_root / 'datasets' / 'd').mkdir()
    r = c.post(f'{API}/datasets/d/uploads', json={'filename': 'big.mp4', 'size': 10_001})
    assert r.status_code == 422 and r.get_json()['error']['field'] == 'size'
    data = mediagen.video(tmp_path / 'v.mp4', 48, 32, 16, 12).read_bytes()
    up = c.post(f'{API}/datasets/d/uploads', json={'filename': 'v.mp4', 'size': len(data)}).get_json()
    assert c.put(f'{API}/uploads/{up["id"]}?offset=0', data=data[:100]).get_json()['received'] == 100
    r = c.put(f'{API}/uploads/{up["id"]}?offset=0', data=data[:100])
    assert r.status_code == 409 and 'offset 100' in r.get_json()['error']['message']
    r = c.put(f'{API}/uploads/{up["id"]}?offset=100', data=data[100:] + b'extra')
    assert r.status_code in (400, 413)
    assert c.get(f'{API}/uploads/{up["id"]}').get_json()['received'] == 100
    time.sleep(0.4)
    assert c.get(f'{API}/datasets/d/uploads').get_json()['uploads'] == []          # swept
    assert c.get(f'{API}/uploads/{up["id"]}').status_code == 404
    assert not (data_root / 'uploads' / up['id']).exists()
