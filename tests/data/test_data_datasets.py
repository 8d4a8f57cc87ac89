"""Data area: dataset folders are created, listed with counts / duration / size, renamed and deleted."""

from tests.support.data import API, small_dataset


def test_create_list_rename_delete(make_app, data_root):
    c = make_app().test_client()
    r = c.post(f'{API}/datasets', json={'name': 'beach clips'})
    assert r.status_code == 201 and r.get_json()['files'] == 0
    folder = data_root / 'datasets' / 'beach clips'
    small_dataset(folder)
    (folder / 'notes.md').write_text('not media')
    listed = c.get(f'{API}/datasets?details=true').get_json()['datasets']
    ds = next(d for d in listed if d['name'] == 'beach clips')
    sizes = sum((folder / n).stat().st_size for n in ('clip.mp4', 'wide.mp4', 'still.png'))
    assert (ds['videos'], ds['images'], ds['captions'], ds['files']) == (2, 1, 2, 3)
    assert ds['size_bytes'] == sizes and ds['unreadable'] == 0
    assert abs(ds['duration_s'] - (40 + 24) / 16) < 1e-6            # 2.5 s + 1.5 s
    assert set(c.get(f'{API}/datasets').get_json()['datasets'][0]) == {'name', 'path', 'images', 'videos', 'captions'}

    assert c.post(f'{API}/datasets', json={'name': 'Beach Clips'}).status_code == 409
    for bad in ['../up', '.hidden', 'a/b', '', ' padded', 'x' * 101]:
        r = c.post(f'{API}/datasets', json={'name': bad})
        assert r.status_code == 400 and r.get_json()['error']['field'] == 'name', bad

    r = c.patch(f'{API}/datasets/beach clips', json={'name': 'beach-v2'})
    assert r.status_code == 200 and r.get_json()['files'] == 3
    assert c.get(f'{API}/datasets/beach clips').status_code == 404
    assert (data_root / 'datasets' / 'beach-v2' / 'clip.txt').read_text().startswith('a grey square')
    c.post(f'{API}/datasets', json={'name': 'other'})
    assert c.patch(f'{API}/datasets/beach-v2', json={'name': 'OTHER'}).status_code == 409

    r = c.delete(f'{API}/datasets/beach-v2')
    assert r.status_code == 400 and r.get_json()['error']['field'] == 'confirm'
    assert (data_root / 'datasets' / 'beach-v2').is_dir()
    assert c.delete(f'{API}/datasets/beach-v2?confirm=true').get_json() == {'name': 'beach-v2', 'deleted': True}
    assert not (data_root / 'datasets' / 'beach-v2').exists()
    assert [d['name'] for d in c.get(f'{API}/datasets').get_json()['datasets']] == ['other']
    assert not any((data_root / 'trash').iterdir())


def test_delete_a_file_removes_its_caption_and_previews(make_app, data_root):
    c = make_app().test_client()
    folder = small_dataset(data_root / 'datasets' / 'd')
    assert c.get(f'{API}/datasets/d/thumbnail/clip.mp4').status_code == 200
    assert c.delete(f'{API}/datasets/d/files/clip.mp4').status_code == 400
    assert c.delete(f'{API}/datasets/d/files/clip.mp4?confirm=true').status_code == 200
    assert not (folder / 'clip.mp4').exists() and not (folder / 'clip.txt').exists()
    assert not list((folder / '.studio' / 'previews').iterdir())
    assert [f['name'] for f in c.get(f'{API}/datasets/d/files').get_json()['files']] == ['still.png', 'wide.mp4']


def test_a_dataset_a_queued_or_running_job_reads_is_neither_renamed_nor_deleted(make_app, data_root, tiny_model):
    """The run's frozen dataset.toml names the folder: moving it would break the job mid-run. Once the job has
    stopped the rename goes through, and task drafts that read the folder follow it."""
    from tests.support.studio import train_form, wait_until, write_dataset
    write_dataset(data_root / 'datasets' / 'busy', behave={'step_time': 0.5})
    write_dataset(data_root / 'datasets' / 'idle')
    app = make_app()
    studio, c = app.extensions['odeo'], app.test_client()
    tid = c.post(f'{API}/tasks', json={'form': train_form(tiny_model, 'busy', epochs=100)}).get_json()['id']
    job = c.post(f'{API}/tasks/{tid}/start', json={}).get_json()['id']
    for attempt in (c.patch(f'{API}/datasets/busy', json={'name': 'moved'}), c.delete(f'{API}/datasets/busy?confirm=true')):
        assert attempt.status_code == 409, attempt.get_json()
        assert attempt.get_json()['error']['message'] == f"dataset 'busy' is used by training job {job} (queued); stop it first"
    wait_until(lambda: studio.jobs.get(job)['state'] == 'running', 30, studio.scheduler.tick, what='the job to run')
    assert c.patch(f'{API}/datasets/busy', json={'name': 'moved'}).status_code == 409
    assert c.patch(f'{API}/datasets/idle', json={'name': 'idle-2'}).status_code == 200     # others stay free
    assert (data_root / 'datasets' / 'busy' / 'img0.png').is_file()
    c.post(f'{API}/jobs/{job}/stop', json={})
    wait_until(lambda: studio.jobs.get(job)['state'] == 'stopped', 30, studio.scheduler.tick, what='the job to stop')
    other = c.post(f'{API}/tasks', json={'form': train_form(tiny_model, 'idle-2')}).get_json()['id']
    renamed = c.patch(f'{API}/datasets/busy', json={'name': 'moved'})
    assert renamed.status_code == 200 and renamed.get_json()['retargeted'] == [tid]
    task = c.get(f'{API}/tasks/{tid}').get_json()                # the draft follows the folder
    assert task['form']['dataset'] == 'moved' and c.post(f'{API}/tasks/{tid}/validate').get_json()['ok']
    assert c.get(f'{API}/tasks/{other}').get_json()['form']['dataset'] == 'idle-2'


def test_a_rename_moves_every_path_a_draft_names_inside_the_folder(tmp_path):
    """path, mask_path and metadata_file inside the renamed folder follow it, relative or absolute;
    other folders and the comments stay."""
    import tomllib

    from api.services.training.form import retarget_dataset
    datasets = tmp_path / 'datasets'
    text = ("# two sources\n[[directory]]\npath = 'datasets/beach'  # the clips\nmask_path = 'datasets/beach/masks'\n"
            f"metadata_file = '{datasets}/beach/meta.csv'\n\n[[directory]]\npath = 'datasets/beachfront'\n")
    moved = retarget_dataset(text, datasets / 'beach', datasets / 'coast', tmp_path)
    dirs = tomllib.loads(moved)['directory']
    assert dirs[0] == {'path': str(datasets / 'coast'), 'mask_path': str(datasets / 'coast' / 'masks'),
                       'metadata_file': str(datasets / 'coast' / 'meta.csv')}
    assert dirs[1] == {'path': 'datasets/beachfront'} and '# two sources' in moved and '# the clips' in moved
    assert retarget_dataset(text, datasets / 'other', datasets / 'coast', tmp_path) is None
