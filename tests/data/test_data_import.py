"""Import from a server folder or a DiffSynth-style metadata table, inside the import roots only:
media checked by content, captions carried over as sidecars, hard links when asked."""

from tests.support import mediagen
from tests.support.data import API


def _source(root):
    src = root / 'footage'
    src.mkdir(parents=True)
    mediagen.video(src / 'a.mp4', 48, 32, 16, 20)
    mediagen.caption(src / 'a.mp4', 'caption from a sidecar')
    mediagen.image(src / 'b.png', 40, 40)
    (src / 'captions.json').write_text('{"b.png": "caption from captions.json"}')
    (src / 'bad.mp4').write_text('a note, not a video')
    (src / 'readme.md').write_text('ignored')
    return src


def test_import_a_folder_by_copy_and_by_link(make_app, data_root):
    src = _source(data_root / 'imports')
    c = make_app().test_client()
    c.post(f'{API}/datasets', json={'name': 'd'})
    res = c.post(f'{API}/datasets/d/import', json={'path': str(src)}).get_json()
    assert [(i['file'], i['caption']) for i in res['imported']] == [('a.mp4', True), ('b.png', True)]
    assert [s['source'] for s in res['skipped']] == [str(src / 'bad.mp4')] and 'text file' in res['skipped'][0]['reason']
    dest = data_root / 'datasets' / 'd'
    assert (dest / 'a.txt').read_text() == 'caption from a sidecar\n'
    assert (dest / 'b.txt').read_text() == 'caption from captions.json\n'
    assert (dest / 'a.mp4').read_bytes() == (src / 'a.mp4').read_bytes()
    assert (dest / 'a.mp4').stat().st_ino != (src / 'a.mp4').stat().st_ino
    res = c.post(f'{API}/datasets/d/import', json={'path': str(src), 'mode': 'link'}).get_json()
    assert [i['file'] for i in res['imported']] == ['a (1).mp4', 'b (1).png']             # nothing overwritten
    assert (dest / 'a (1).mp4').stat().st_ino == (src / 'a.mp4').stat().st_ino
    assert (dest / 'a (1).txt').read_text() == 'caption from a sidecar\n'
    assert not [p for p in (dest / '.studio' / 'tmp').iterdir()]


def test_import_what_a_metadata_table_names(make_app, data_root, tmp_path):
    root = tmp_path / 'shared'
    src = root / 'set'
    (src / 'videos').mkdir(parents=True)
    mediagen.video(src / 'videos' / 'one.mp4', 48, 32, 16, 20)
    mediagen.video(src / 'videos' / 'two.mp4', 48, 32, 16, 20)
    (src / 'metadata.csv').write_text('video,prompt\nvideos/one.mp4,"first, with a comma"\n'
                                      'videos/two.mp4,second\nvideos/gone.mp4,missing\n')
    c = make_app(import_roots=(str(root),)).test_client()
    c.post(f'{API}/datasets', json={'name': 'd'})
    res = c.post(f'{API}/datasets/d/import', json={'path': str(src / 'metadata.csv')}).get_json()
    assert [i['file'] for i in res['imported']] == ['one.mp4', 'two.mp4']
    assert any("'videos/gone.mp4' not found" in n for n in res['notes'])
    assert (data_root / 'datasets' / 'd' / 'one.txt').read_text() == 'first, with a comma\n'
    files = {f['name']: f['caption_source'] for f in c.get(f'{API}/datasets/d/files').get_json()['files']}
    assert files == {'one.mp4': 'one.txt', 'two.mp4': 'two.txt'}


def test_paths_outside_the_import_roots_are_refused(make_app, data_root, tmp_path):
    src = _source(tmp_path / 'private')
    c = make_app().test_client()
    c.post(f'{API}/datasets', json={'name': 'd'})
    for path in [str(src), str(data_root / 'imports' / '..' / 'datasets'), '/etc', 'relative/path']:
        r = c.post(f'{API}/datasets/d/import', json={'path': path})
        assert r.status_code == 400 and r.get_json()['error']['field'] == 'path', path
    (data_root / 'imports').mkdir()
    (data_root / 'imports' / 'link').symlink_to(src)
    r = c.post(f'{API}/datasets/d/import', json={'path': str(data_root / 'imports' / 'link')})
    assert r.get_json()['error']['code'] == 'path_refused'
    assert not any((data_root / 'datasets' / 'd').iterdir())
