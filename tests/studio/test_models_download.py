"""The Models area against a stand-in hub (tests/fakes/hub.py) on 127.0.0.1, with huggingface_hub itself as
the client: downloads as queued jobs (only the files a variant needs, each verified), resuming from the
bytes on disk, re-fetching a corrupt file, the mirror variable, revisions, the disk-space check and the
delete guard."""

import hashlib
import json
from pathlib import Path

import pytest

from tests.fakes.hub import FakeHub
from tests.support.studio import train_form, wait_until, write_dataset

REPO = 'Wan-AI/Wan2.1-T2V-1.3B'
VARIANT = 'wan2.1-t2v-1.3b'
EXTRA = {'README.md': b'# model card\n', 'assets/logo.png': b'\x89PNG not needed', 'examples/i2v.jpg': b'x' * 999}


@pytest.fixture(scope='module')
def official_folder(tmp_path_factory):
    from models.wan.tiny import write_tiny_model
    return write_tiny_model(tmp_path_factory.mktemp('hub_models'), VARIANT, layouts=('official',))['official']


@pytest.fixture
def hub(official_folder, monkeypatch):
    """The stand-in hub holding the tiny official folder (plus files no layout needs) as REPO; HF_ENDPOINT
    names it and offline mode is off for the studio and the jobs it starts."""
    import huggingface_hub.constants as constants
    h = FakeHub().start()
    h.sha = h.publish(REPO, official_folder, EXTRA)
    monkeypatch.setenv('HF_ENDPOINT', h.url)
    monkeypatch.delenv('HF_HUB_OFFLINE', raising=False)
    monkeypatch.setattr(constants, 'HF_HUB_OFFLINE', False)
    yield h
    h.stop()


def run_job(studio, job_id, states=('done', 'failed', 'stopped'), timeout=60):
    return wait_until(lambda: (r := studio.jobs.get(job_id))['state'] in states and r, timeout, studio.scheduler.tick,
                      every=0.1, what=f'download job {job_id}')


def events(studio, job):
    path = studio.paths.root / job['run_dir'] / 'events.jsonl'
    return [json.loads(line) for line in path.read_text().splitlines()]


def start_download(c, **body):
    r = c.post('/api/v1/models/downloads', json={'variant': VARIANT, 'layout': 'official', **body})
    assert r.status_code == 202, r.get_json()
    return r.get_json()


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_huggingface_hub_reads_the_stand_in_hub(hub, official_folder, tmp_path):
    """The stand-in speaks what huggingface_hub asks: model info with LFS sha256, HEAD + GET on resolve."""
    from huggingface_hub import HfApi, hf_hub_download
    info = HfApi(endpoint=hub.url).model_info(REPO, files_metadata=True)
    assert info.sha == hub.sha
    vae = next(s for s in info.siblings if s.rfilename == 'Wan2.1_VAE.pth')
    assert vae.lfs.sha256 == sha256(official_folder / 'Wan2.1_VAE.pth') and vae.size == vae.lfs.size
    got = hf_hub_download(REPO, 'config.json', revision=hub.sha, local_dir=tmp_path / 'dl', endpoint=hub.url)
    assert Path(got).read_bytes() == (official_folder / 'config.json').read_bytes()
    assert {m for m, p, _ in hub.requests if p.endswith('/config.json')} >= {'HEAD', 'GET'}


def test_download_lands_verified_with_its_revision_and_only_the_needed_files(make_app, hub, official_folder):
    app = make_app()
    studio, c = app.extensions['odeo'], app.test_client()
    queued = start_download(c)
    assert queued['state'] == 'queued' and queued['download']['sources'][0]['commit'] == hub.sha
    job = run_job(studio, queued['id'])
    assert job['state'] == 'done', (job['message'], (studio.paths.root / job['run_dir'] / 'log.txt').read_text())
    assert job['request']['gpus'] == 0 and job['attempts'][-1]['devices'] == []
    folder = studio.paths.models / 'Wan2.1-T2V-1.3B'
    fetched = {p for m, p, _ in hub.requests if m == 'GET' and '/resolve/' in p}
    assert all(p.split(f'/resolve/{hub.sha}/')[1] not in EXTRA for p in fetched)       # only what the variant needs
    assert not any(folder.joinpath(n).exists() for n in EXTRA)
    for f in ('config.json', 'diffusion_pytorch_model.safetensors', 'Wan2.1_VAE.pth',
              'models_t5_umt5-xxl-enc-bf16.pth', 'google/umt5-xxl/spiece.model'):
        assert (folder / f).read_bytes() == (official_folder / f).read_bytes()
    manifest = json.loads((folder / '.odeo-model.json').read_text())
    assert manifest['sources'][0]['repo'] == REPO and manifest['sources'][0]['commit'] == hub.sha
    assert not (studio.paths.models / '.downloads' / 'Wan2.1-T2V-1.3B').exists()
    progress = [e for e in events(studio, job) if e['type'] == 'progress']
    assert progress[-1]['phase'] == 'download' and progress[-1]['bytes_done'] == progress[-1]['bytes_total'] > 0
    assert {'bytes_per_s', 'eta_s', 'file', 'files_done'} <= set(progress[-1])
    studio.models.refresh()
    listed = next(m for m in c.get('/api/v1/models').get_json()['models'] if m['name'] == 'Wan2.1-T2V-1.3B')
    assert listed['variant']['id'] == VARIANT and listed['layout'] == 'wan'
    assert listed['source']['sources'][0]['commit'] == hub.sha and listed['size_bytes'] > 4_000_000
    assert c.post('/api/v1/models/downloads', json={'variant': VARIANT}).status_code == 409    # same revision


def test_the_mirror_variable_is_honoured(make_app, hub):
    """HF_ENDPOINT (the mirror) reaches both the studio's listing and the job process: every request hit it."""
    app = make_app()
    studio, c = app.extensions['odeo'], app.test_client()
    job = run_job(studio, start_download(c, name='mirrored')['id'])
    assert job['state'] == 'done'
    paths = [p for _, p, _ in hub.requests]
    assert f'/api/models/{REPO}/revision/main' in paths
    assert any(p == f'/{REPO}/resolve/{hub.sha}/Wan2.1_VAE.pth' for p in paths)
    assert c.get('/api/v1/models').get_json()['hub']['endpoint'] == hub.url


def test_an_interrupted_download_resumes_from_the_bytes_it_had(make_app, hub, official_folder):
    app = make_app()
    studio, c = app.extensions['odeo'], app.test_client()
    # 1) a dropped connection inside a file: the job asks again from the byte it reached
    hub.cut_after('Wan2.1_VAE.pth', 1_000_000)
    job = run_job(studio, start_download(c, name='cut')['id'])
    assert job['state'] == 'done'
    assert hub.ranges('Wan2.1_VAE.pth') == [None, 'bytes=1000000-']
    assert sha256(studio.paths.models / 'cut' / 'Wan2.1_VAE.pth') == sha256(official_folder / 'Wan2.1_VAE.pth')
    # 2) a job stopped half-way (as a restart would): downloading again continues from the .part on disk
    hub.requests.clear()
    hub.chunk, hub.delay = 16 * 1024, 0.01
    first = start_download(c, name='stopped')
    part = studio.paths.models / '.downloads' / 'stopped' / 'Wan2.1_VAE.pth.part'
    wait_until(lambda: part.exists() and part.stat().st_size > 200_000, 60, studio.scheduler.tick, every=0.05,
               what='half a VAE file')
    c.post(f'/api/v1/jobs/{first["id"]}/stop', json={})
    assert run_job(studio, first['id'])['state'] == 'stopped'
    have = part.stat().st_size
    assert 0 < have < (official_folder / 'Wan2.1_VAE.pth').stat().st_size
    hub.delay = 0.0
    job = run_job(studio, start_download(c, name='stopped')['id'])
    assert job['state'] == 'done'
    assert hub.ranges('Wan2.1_VAE.pth')[-1] == f'bytes={have}-'
    assert sha256(studio.paths.models / 'stopped' / 'Wan2.1_VAE.pth') == sha256(official_folder / 'Wan2.1_VAE.pth')


def test_a_corrupt_file_is_named_and_fetched_again(make_app, hub, official_folder):
    app = make_app()
    studio, c = app.extensions['odeo'], app.test_client()
    hub.corrupt_once('diffusion_pytorch_model.safetensors')
    job = run_job(studio, start_download(c)['id'])
    assert job['state'] == 'done'
    assert len(hub.ranges('diffusion_pytorch_model.safetensors')) == 2          # fetched again from byte 0
    assert hub.ranges('diffusion_pytorch_model.safetensors')[1] is None
    log = (studio.paths.root / job['run_dir'] / 'log.txt').read_text()
    assert 'diffusion_pytorch_model.safetensors sha256' in log and 'corrupt' in log
    named = [e for e in events(studio, job) if e['type'] == 'status' and 'diffusion_pytorch_model' in e['message']]
    assert named and 'fetching it again' in named[0]['message']
    got = studio.paths.models / 'Wan2.1-T2V-1.3B' / 'diffusion_pytorch_model.safetensors'
    assert sha256(got) == sha256(official_folder / 'diffusion_pytorch_model.safetensors')


def test_a_disk_too_small_is_refused_with_507(make_app, hub, monkeypatch):
    from api.services.models import hub as plans
    app = make_app()
    studio, c = app.extensions['odeo'], app.test_client()
    monkeypatch.setattr(plans, 'free_bytes', lambda path: 10_000)
    r = c.post('/api/v1/models/downloads', json={'variant': VARIANT})
    assert r.status_code == 507
    msg = r.get_json()['error']['message']
    assert str(studio.paths.models) in msg and 'bytes' in msg and '10000' in msg
    assert studio.jobs.all('models') == []


def test_a_newer_revision_lands_beside_the_old_one(make_app, hub, official_folder):
    app = make_app()
    studio, c = app.extensions['odeo'], app.test_client()
    old = hub.sha
    assert run_job(studio, start_download(c)['id'])['state'] == 'done'
    new = hub.publish(REPO, official_folder, {**EXTRA, 'google/umt5-xxl/special_tokens_map.json': b'{"eos": "</s>"}\n'})
    queued = start_download(c)
    assert queued['download']['name'] == f'Wan2.1-T2V-1.3B-{new[:7]}'
    assert run_job(studio, queued['id'])['state'] == 'done'
    studio.models.refresh()
    commits = {m['name']: m['source']['sources'][0]['commit'] for m in c.get('/api/v1/models').get_json()['models']}
    assert commits == {'Wan2.1-T2V-1.3B': old, f'Wan2.1-T2V-1.3B-{new[:7]}': new}
    pinned = start_download(c, revision=old, name='pinned')                  # an older commit, by name
    assert pinned['download']['sources'][0]['commit'] == old


def test_delete_is_refused_while_a_job_uses_the_model_and_runs_record_the_revision(make_app, hub, data_root):
    app = make_app()
    studio, c = app.extensions['odeo'], app.test_client()
    assert run_job(studio, start_download(c)['id'])['state'] == 'done'
    studio.models.refresh()
    folder = studio.paths.models / 'Wan2.1-T2V-1.3B'
    write_dataset(data_root / 'datasets' / 'demo')
    task = c.post('/api/v1/tasks', json={'form': train_form(folder, 'demo', epochs=1)}).get_json()['id']
    job = c.post(f'/api/v1/tasks/{task}/start', json={}).get_json()           # queued: the scheduler is not ticked
    rec = studio.jobs.get(job['id'])
    assert rec['model_sources'][0]['sources'][0] == {'repo': REPO, 'revision': 'main', 'commit': hub.sha}
    listed = next(m for m in c.get('/api/v1/models').get_json()['models'] if m['name'] == 'Wan2.1-T2V-1.3B')
    assert listed['used_by']['jobs'][0]['job_id'] == job['id'] and listed['used_by']['tasks'][0]['task_id'] == task
    assert c.delete('/api/v1/models/Wan2.1-T2V-1.3B').status_code == 400                 # confirm needed
    r = c.delete('/api/v1/models/Wan2.1-T2V-1.3B?confirm=true')
    assert r.status_code == 409 and job['id'] in r.get_json()['error']['message'] and task in r.get_json()['error']['message']
    assert folder.is_dir()
    c.post(f'/api/v1/jobs/{job["id"]}/cancel', json={})
    r = c.delete('/api/v1/models/Wan2.1-T2V-1.3B?confirm=true')
    assert r.status_code == 200 and not folder.exists()


def test_plans_take_only_the_files_each_layout_needs(hub, tmp_path):
    """The comfy layout: the repackaged transformer and text encoder plus the small official files (no official
    transformer or T5); the diffusers layout: the component folders."""
    from huggingface_hub import HfApi

    from api.services.models.hub import COMFY_21, choice, make_plan
    small = tmp_path / 'repo'
    small.mkdir()
    hub.publish(COMFY_21, small, {f'split_files/{p}': b'c' for p in (
        'diffusion_models/wan2.1_t2v_1.3B_fp16.safetensors', 'diffusion_models/wan2.1_t2v_14B_fp16.safetensors',
        'text_encoders/umt5_xxl_fp16.safetensors', 'text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors',
        'vae/wan_2.1_vae.safetensors')})
    plan = make_plan(choice(VARIANT, 'comfy'), HfApi(endpoint=hub.url))
    paths = sorted(f['path'] for s in plan['sources'] for f in s['files'])
    assert paths == ['Wan2.1_VAE.pth', 'config.json', 'diffusion_models/wan2.1_t2v_1.3B_fp16.safetensors',
                     'google/umt5-xxl/special_tokens_map.json', 'google/umt5-xxl/spiece.model',
                     'google/umt5-xxl/tokenizer.json', 'google/umt5-xxl/tokenizer_config.json',
                     'text_encoders/umt5_xxl_fp16.safetensors']
    hub.publish(REPO + '-Diffusers', small, {'model_index.json': b'{}', 'README.md': b'', 'transformer/config.json': b'{}',
                                             'vae/config.json': b'{}', 'text_encoder/config.json': b'{}',
                                             'tokenizer/spiece.model': b's', 'scheduler/scheduler_config.json': b'{}'})
    plan = make_plan(choice(VARIANT, 'diffusers'), HfApi(endpoint=hub.url))
    assert 'README.md' not in {f['path'] for f in plan['sources'][0]['files']} and len(plan['sources'][0]['files']) == 6
    from api.services.errors import Invalid
    with pytest.raises(Invalid, match='transformer_2'):        # an A14B repo needs its second expert
        make_plan(choice('wan2.2-t2v-a14b', 'diffusers'),
                  _Alias(HfApi(endpoint=hub.url), {'Wan-AI/Wan2.2-T2V-A14B-Diffusers': REPO + '-Diffusers'}))


class _Alias:
    """HfApi reading another repository's listing under a name (a repo that lacks a required file)."""

    def __init__(self, api, names):
        self.api, self.names, self.endpoint = api, names, api.endpoint

    def model_info(self, repo, **kw):
        return self.api.model_info(self.names.get(repo, repo), **kw)
