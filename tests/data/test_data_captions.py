"""Captions: edited beside the clip as the sidecar .txt (atomic, UTF-8), a non-UTF-8 file reported and
only replaced when asked, table captions left to their table, bulk edits previewed before they apply,
search over names and captions."""

from tests.support.data import API, small_dataset


def _files(c, q=None):
    r = c.get(f'{API}/datasets/d/files', query_string={'q': q} if q else None)
    return {f['name']: f for f in r.get_json()['files']}


def test_edit_a_caption(make_app, data_root):
    c = make_app().test_client()
    folder = small_dataset(data_root / 'datasets' / 'd', captions=False)
    assert _files(c)['still.png']['caption_origin'] == 'none'
    assert _files(c)['still.png']['reason'] == 'no caption'
    r = c.put(f'{API}/datasets/d/captions/still.png', json={'text': '  a café in the snow — 雪  '})
    assert r.status_code == 200 and r.get_json() == {'text': 'a café in the snow — 雪', 'source': 'still.txt',
                                                     'origin': 'human', 'error': None, 'model': None}
    assert (folder / 'still.txt').read_bytes() == 'a café in the snow — 雪\n'.encode('utf-8')
    f = _files(c)['still.png']
    assert f['caption'] == 'a café in the snow — 雪' and f['reason'].startswith('too small')   # captioned now
    assert not [p for p in folder.iterdir() if p.name.endswith('.tmp')]
    assert c.put(f'{API}/datasets/d/captions/still.png', json={'text': 5}).status_code == 400
    assert c.put(f'{API}/datasets/d/captions/nothere.png', json={'text': 'x'}).status_code == 404


def test_a_caption_that_is_not_utf8_is_reported_not_clobbered(make_app, data_root):
    c = make_app().test_client()
    folder = small_dataset(data_root / 'datasets' / 'd')
    (folder / 'clip.txt').write_bytes('caf\xe9 latin-1'.encode('latin-1'))
    f = _files(c)['clip.mp4']
    assert f['caption'] is None and 'clip.txt is not UTF-8' in f['caption_error'] and f['status'] == 'dropped'
    r = c.put(f'{API}/datasets/d/captions/clip.mp4', json={'text': 'new text'})
    assert r.status_code == 409 and 'not UTF-8' in r.get_json()['error']['message']
    assert (folder / 'clip.txt').read_bytes() == 'caf\xe9 latin-1'.encode('latin-1')
    r = c.put(f'{API}/datasets/d/captions/clip.mp4', json={'text': 'new text', 'replace_invalid': True})
    assert r.status_code == 200 and (folder / 'clip.txt').read_text(encoding='utf-8') == 'new text\n'


def test_a_caption_from_a_metadata_table_is_left_to_it(make_app, data_root):
    c = make_app().test_client()
    folder = small_dataset(data_root / 'datasets' / 'd')
    (folder / 'metadata.csv').write_text('video,prompt\nwide.mp4,"from the table, with a comma"\n')
    f = _files(c)['wide.mp4']
    assert (f['caption'], f['caption_source'], f['caption_origin']) == ('from the table, with a comma', 'metadata.csv', 'table')
    r = c.put(f'{API}/datasets/d/captions/wide.mp4', json={'text': 'would not train'})
    assert r.status_code == 409 and 'metadata.csv' in r.get_json()['error']['message']
    assert (folder / 'wide.txt').read_text() == 'a wide grey frame'


def test_bulk_prefix_and_replace_preview_then_apply(make_app, data_root):
    c = make_app().test_client()
    folder = small_dataset(data_root / 'datasets' / 'd')
    preview = c.post(f'{API}/datasets/d/captions/bulk', json={'op': 'prefix', 'text': 'sks, '}).get_json()
    assert preview['matched'] == 2 and preview['changed'] == 0 and not preview['applied']
    assert preview['skipped'] == [{'file': 'still.png', 'reason': 'no caption'}]
    assert {p['after'] for p in preview['preview']} == {'sks, a grey square slides right', 'sks, a wide grey frame'}
    assert (folder / 'clip.txt').read_text() == 'a grey square slides right'          # nothing written yet
    done = c.post(f'{API}/datasets/d/captions/bulk', json={'op': 'prefix', 'text': 'sks, ', 'apply': True}).get_json()
    assert done['changed'] == 2 and (folder / 'clip.txt').read_text() == 'sks, a grey square slides right\n'
    again = c.post(f'{API}/datasets/d/captions/bulk', json={'op': 'prefix', 'text': 'sks, '}).get_json()
    assert again['matched'] == 0                                                        # prefixes are not stacked
    body = {'op': 'replace', 'find': r'GREY (\w+)', 'replace': r'blue \1', 'regex': True, 'case': False}
    preview = c.post(f'{API}/datasets/d/captions/bulk', json={**body, 'q': 'square'}).get_json()
    assert preview['files'] == ['clip.mp4'] and preview['preview'][0]['after'] == 'sks, a blue square slides right'
    c.post(f'{API}/datasets/d/captions/bulk', json={**body, 'apply': True})
    assert (folder / 'wide.txt').read_text() == 'sks, a wide blue frame\n'
    r = c.post(f'{API}/datasets/d/captions/bulk', json={'op': 'replace', 'find': '(', 'regex': True})
    assert r.status_code == 400 and r.get_json()['error']['field'] == 'find'
    assert c.post(f'{API}/datasets/d/captions/bulk', json={'op': 'shout'}).get_json()['error']['field'] == 'op'


def test_a_catastrophic_pattern_is_cut_short_with_422(make_app, data_root):
    # (a|a)+$ backtracks 2^n times on 'aaa...!': Python's re would spin for minutes on this caption
    import time
    c = make_app().test_client()
    folder = small_dataset(data_root / 'datasets' / 'd')
    (folder / 'clip.txt').write_text('a' * 26 + '!')
    t0 = time.monotonic()
    r = c.post(f'{API}/datasets/d/captions/bulk', json={'op': 'replace', 'find': '(a|a)+$', 'regex': True})
    assert time.monotonic() - t0 < 6
    assert r.status_code == 422 and r.get_json()['error']['field'] == 'find'
    assert '(a|a)+$' in r.get_json()['error']['message']
    assert (folder / 'clip.txt').read_text() == 'a' * 26 + '!'


def test_search_names_and_captions(make_app, data_root):
    c = make_app().test_client()
    small_dataset(data_root / 'datasets' / 'd')
    assert set(_files(c, 'SLIDES')) == {'clip.mp4'}
    assert set(_files(c, 'wide')) == {'wide.mp4'}
    assert set(_files(c, 'grey')) == {'clip.mp4', 'wide.mp4'}
    assert _files(c, 'nothing like it') == {}


def test_a_conditional_write_backs_off_under_the_lock(data_root):
    """What the caption job relies on: the check and the write happen together."""
    import pytest

    from api.services.data.caption_files import CaptionBook, CaptionSkipped
    folder = small_dataset(data_root / 'datasets' / 'd')
    book = CaptionBook(folder)
    with pytest.raises(CaptionSkipped, match='a person'):
        book.write('clip.mp4', 'machine text', by='machine', model='m',
                   unless=lambda s: 'a person wrote it' if s['origin'] == 'human' else None)
    assert (folder / 'clip.txt').read_text() == 'a grey square slides right'
    state = book.write('still.png', 'machine text', by='machine', model='m', unless=lambda s: None)
    assert (state['origin'], state['model']) == ('machine', 'm')
    book.copy('still.png', 'wide.mp4')
    assert book.read('wide.mp4')['origin'] == 'machine'
