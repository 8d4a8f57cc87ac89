"""The ComfyUI backend against a stand-in server that speaks ComfyUI's HTTP and WebSocket protocol
(tests/fakes/comfyui.py): videos fetched, LoRAs placed and used, errors at submit and mid-run told with
the node, a stop that interrupts and dequeues, an upload renamed on collision, a server that goes away,
graph templates checked against ComfyUI's node inputs, and ComfyUI started from a checkout. With
COMFYUI_URL set, the templates are also checked against that real server's /object_info."""

import json
import os
import threading
from pathlib import Path

import pytest
from PIL import Image

from api.jobs import infer
from api.jobs.control import JobError
from api.services.inference.comfyui import graphs
from api.services.inference.comfyui.client import ComfyClient, ComfyError
from api.services.inference.comfyui.managed import ManagedComfyUI
from models.wan.inference import expert_switch_step
from models.wan.variants import VARIANTS
from tests.fakes.comfyui import FakeComfyUI
from tests.support.studio import REPO, wait_until
from tests.support.inference import mean_abs_diff, read_video
from tests.support.trainer import events

CELL = dict(prompt='a red fox', negative_prompt='blurry', seed=5, steps=4, guidance=5.0, guidance_low=None, shift=5.0,
            width=64, height=48, frames=9, fps=16, strength=1.0)


@pytest.fixture
def fake(tmp_path):
    server = FakeComfyUI(tmp_path / 'comfy').start()
    for variant in VARIANTS:
        files = graphs.model_files(variant)
        for slot, folder in (('unet', 'diffusion_models'), ('unet_low', 'diffusion_models'), ('clip', 'text_encoders'),
                             ('vae', 'vae'), ('clip_vision', 'clip_vision')):
            if slot in files:
                (server.root / 'models' / folder / files[slot]).write_bytes(b'weights')
    yield server
    server.stop()


def lora_file(folder, name='epoch1'):
    path = Path(folder) / name / 'adapter_model.safetensors'
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b'a LoRA in ComfyUI format')
    return path


def write_job(run, fake, variant='wan2.1-t2v-1.3b', rows=(None,), inputs=None, **settings):
    """A run directory whose job.json holds a ComfyUI test run, as the studio writes it."""
    run.mkdir(parents=True, exist_ok=True)
    inputs = inputs or [{'prompt': CELL['prompt'], 'image': None, 'image_path': None, 'width': 64, 'height': 48}]
    spec = {'variant': variant, 'model': {'ckpt_path': '/models/x'}, 'backend': 'comfyui', 'loras': list(rows),
            'inputs': inputs, 'strengths': settings.pop('strengths', [1.0]), 'seed': 5, 'steps': 4, 'guidance': 5.0,
            'guidance_low': None, 'shift': 5.0, 'frames': 9, 'fps': 16, 'negative_prompt': 'blurry', 'width': None,
            'height': None, 'area': None, 'cells': 0,
            'comfyui': {'url': fake.url, 'mode': 'external', 'path': '', 'python': None, 'loras_dir': str(fake.loras_dir),
                        'models': {}, 'model_roots': []}, **settings}
    (run / 'job.json').write_text(json.dumps({'id': run.name, 'task_id': 'fox', 'infer': spec}))
    return run


def lora_row(path, name='epoch1', epoch=1):
    return {'id': f'j1/{name}', 'job_id': 'j1', 'task_id': 'fox', 'name': name, 'epoch': epoch, 'step': 4 * epoch,
            'files': [{'path': str(path), 'expert': 'main'}]}


def submitted(fake):
    return [body['prompt'] for method, path, body in fake.requests if (method, path) == ('POST', '/prompt')]


def test_success_places_the_lora_and_fetches_each_video(fake, tmp_path):
    lora = lora_file(tmp_path / 'train')
    run = write_job(tmp_path / 'run', fake, rows=[None, lora_row(lora)], strengths=[1.0, 0.5])
    assert infer.main(['--run_dir', str(run)]) == 0
    manifest = json.loads((run / 'results.json').read_text())
    cells = manifest['cells']
    assert [(c['lora'] and c['lora']['name'], c['strength'], c['status']) for c in cells] == [
        (None, None, 'done'), ('epoch1', 1.0, 'done'), ('epoch1', 0.5, 'done')]
    placed = fake.loras_dir / 'odeo' / 'fox' / 'j1-epoch1.safetensors'
    assert placed.read_bytes() == lora.read_bytes()
    graphs_sent = submitted(fake)
    loaders = [n for g in graphs_sent for n in g.values() if n['class_type'] == 'LoraLoaderModelOnly']
    assert [(n['inputs']['lora_name'], n['inputs']['strength_model']) for n in loaders] == [
        ('odeo/fox/j1-epoch1.safetensors', 1.0), ('odeo/fox/j1-epoch1.safetensors', 0.5)]
    videos = [read_video(run / c['video']) for c in cells]
    for frames, rate, codec in videos:
        assert frames.shape == (9, 48, 64, 3) and codec == 'h264' and rate == 16
    assert mean_abs_diff(videos[0][0], videos[1][0]) > 5 and mean_abs_diff(videos[1][0], videos[2][0]) > 5
    kinds = [(e['kind'], e['cell']) for e in events(run) if e['type'] == 'artifact']
    assert kinds == [('video', 'c000'), ('image', 'c000'), ('video', 'c001'), ('image', 'c001'), ('video', 'c002'),
                     ('image', 'c002')]
    progress = [e for e in events(run) if e['type'] == 'progress']
    assert progress[-1]['step'] == progress[-1]['total_steps'] == 12


def test_a_node_error_at_submit_names_the_node_and_the_problem(fake, tmp_path):
    (fake.root / 'models' / 'vae' / graphs.COMMON_FILES['vae']).unlink()
    run = write_job(tmp_path / 'run', fake)
    assert infer.main(['--run_dir', str(run)]) == 1
    status = [e for e in events(run) if e['type'] == 'status'][-1]
    assert status['state'] == 'failed'
    assert "ComfyUI refused the graph: VAELoader (node" in status['message']
    assert f"vae_name: '{graphs.COMMON_FILES['vae']}' not in" in status['message']
    assert json.loads((run / 'results.json').read_text())['cells'][0]['status'] == 'failed'


def test_an_execution_error_mid_run_is_reported_with_its_node(fake, tmp_path):
    fake.fail_in = 'VAEDecode'
    run = write_job(tmp_path / 'run', fake)
    assert infer.main(['--run_dir', str(run)]) == 1
    message = [e for e in events(run) if e['type'] == 'status'][-1]['message']
    assert "ComfyUI failed in VAEDecode (node" in message and "'Decode'" in message
    assert 'OutOfMemoryError: Allocation on device 0' in message
    assert 'Traceback' not in (run / 'events.jsonl').read_text()


def test_a_stop_interrupts_the_prompt_and_removes_it_from_the_queue(fake, tmp_path):
    fake.step_time = 0.3
    run = write_job(tmp_path / 'run', fake, steps=30)
    result = {}
    worker = threading.Thread(target=lambda: result.update(code=infer.main(['--run_dir', str(run)])))
    worker.start()
    wait_until(lambda: fake.running is not None, 30, what='the prompt to run')
    prompt_id = fake.running[1]
    (run / 'control').mkdir(exist_ok=True)
    (run / 'control' / 'stop').touch()
    worker.join(30)
    assert result['code'] == 0
    assert [e for e in events(run) if e['type'] == 'status'][-1]['state'] == 'stopped'
    sent = [(m, p, b) for m, p, b in fake.requests if m == 'POST' and p in ('/interrupt', '/queue')]
    assert ('POST', '/interrupt', {'prompt_id': prompt_id}) in sent
    assert ('POST', '/queue', {'delete': [prompt_id]}) in sent
    wait_until(lambda: prompt_id in fake.history, 10, what='the interrupted prompt to end')
    assert fake.history[prompt_id]['status']['status_str'] == 'error'
    assert json.loads((run / 'results.json').read_text())['cells'][0]['status'] == 'skipped'
    assert not (run / 'control' / 'stop').exists()


def test_an_upload_renamed_by_comfyui_is_used_under_its_new_name(fake, tmp_path):
    Image.new('RGB', (8, 8), (1, 2, 3)).save(fake.root / 'input' / 'fox.png')      # someone else's fox.png
    image = tmp_path / 'gallery' / 'fox.png'
    image.parent.mkdir()
    Image.new('RGB', (96, 72), (200, 80, 20)).save(image)
    inputs = [{'prompt': 'a fox', 'image': 'foxes/fox.png', 'image_path': str(image), 'width': 64, 'height': 48}]
    run = write_job(tmp_path / 'run', fake, variant='wan2.1-i2v-14b', inputs=inputs)
    assert infer.main(['--run_dir', str(run)]) == 0
    (graph,) = submitted(fake)
    loads = [n['inputs']['image'] for n in graph.values() if n['class_type'] == 'LoadImage']
    assert loads == ['fox (1).png']
    assert (fake.root / 'input' / 'fox (1).png').read_bytes() == image.read_bytes()
    assert Image.open(fake.root / 'input' / 'fox.png').size == (8, 8)         # theirs untouched


def test_a_server_that_goes_away_fails_the_job_and_the_queue_moves_on(fake, make_app, tiny_model):
    port = fake.port
    app = make_app(cpu_slots=1, comfyui_url=fake.url, comfyui_loras_dir=str(fake.loras_dir))
    studio, c = app.extensions['odeo'], app.test_client()
    task = c.post('/api/v1/tasks', json={'form': {'model_path': str(tiny_model)}}).get_json()
    run = {'base': True, 'prompts': ['a fox'], 'backend': 'comfyui', 'steps': 6, 'frames': 9, 'width': 64, 'height': 48}
    first = c.post(f'/api/v1/tasks/{task["id"]}/infer', json=run).get_json()
    second = c.post(f'/api/v1/tasks/{task["id"]}/infer', json={**run, 'seed': 6}).get_json()
    assert first['state'] == second['state'] == 'queued'
    fake.step_time, fake.die_at_step = 0.2, 3
    state = lambda jid: studio.jobs.get(jid)['state']  # noqa: E731
    wait_until(lambda: state(first['id']) == 'failed', 60, studio.scheduler.tick, every=0.2, what='the first job to fail')
    job = studio.jobs.get(first['id'])
    assert f'ComfyUI at http://127.0.0.1:{port} went away while running the graph' in job['message']
    assert 'Traceback' not in job['message']
    revived = FakeComfyUI(fake.root, port=port).start()                  # ComfyUI is back on its port
    try:
        wait_until(lambda: state(second['id']) in ('done', 'failed'), 60, studio.scheduler.tick, every=0.2,
                   what='the next job')
        assert state(second['id']) == 'done', studio.jobs.get(second['id'])['message']
        assert studio.jobs.get(second['id'])['attempts'][0]['started_at'] >= job['finished_at']
    finally:
        revived.stop()


INPUTS = {'t2v': (False,), 'i2v': (True,), 'ti2v': (False, True)}      # with a first frame or not


@pytest.mark.parametrize('variant, with_image', [(v, i) for v in sorted(VARIANTS) for i in INPUTS[VARIANTS[v].task]])
def test_graph_templates_use_comfyui_node_inputs(variant, with_image):
    v = VARIANTS[variant]
    files = graphs.model_files(variant)
    loras = {'high_noise': 'h.safetensors', 'low_noise': 'l.safetensors'} if v.two_experts else {'main': 'm.safetensors'}
    graph, save = graphs.build(variant, {**CELL, 'steps': 20}, files, loras, 'first.png' if with_image else None)
    assert graphs.problems(graph, graphs.object_info()) == []
    assert graph[save]['class_type'] == 'SaveVideo' and graph[save]['inputs']['format'] == 'mp4'
    by_class = {}
    for node in graph.values():
        by_class.setdefault(node['class_type'], []).append(node['inputs'])
    assert {i['lora_name'] for i in by_class['LoraLoaderModelOnly']} == set(loras.values())
    if v.two_experts:
        high, low = by_class['KSamplerAdvanced']
        switch = expert_switch_step(20, CELL['shift'], v.boundary)
        assert 0 < switch < 20
        assert (high['start_at_step'], high['end_at_step'], low['start_at_step']) == (0, switch, switch)
        assert (high['add_noise'], low['add_noise'], high['return_with_leftover_noise']) == ('enable', 'disable', 'enable')
    if v.uses_clip:
        assert by_class['WanImageToVideo'][0]['clip_vision_output'][0] in graph


def test_graphs_are_fitted_to_the_servers_node_definitions():
    """Older servers lack some inputs (CLIPVisionEncode crop), newer ones add required ones and list combos as
    ['COMBO', {'options'}]; an absent node class is an error that names it."""
    info = graphs.object_info({('UNETLoader', 'unet_name'): ['u.safetensors']})
    del info['CLIPVisionEncode']['input']['required']['crop']
    info['CreateVideo']['input']['required']['bit_depth'] = ['COMBO', {'options': ['8-bit', '10-bit'], 'default': '8-bit'}]
    info['SaveVideo']['input']['required']['format'] = ['COMBO', {'options': ['auto', 'webm'], 'default': 'auto'}]
    client = ComfyClient('http://127.0.0.1:9')
    client._info = info
    graph, save = graphs.build('wan2.1-i2v-14b', CELL, graphs.model_files('wan2.1-i2v-14b'), {}, 'x.png')
    fitted = client.adapt(graph)
    encode = next(n for n in fitted.values() if n['class_type'] == 'CLIPVisionEncode')
    assert 'crop' not in encode['inputs']
    assert next(n for n in fitted.values() if n['class_type'] == 'CreateVideo')['inputs']['bit_depth'] == '8-bit'
    assert fitted[save]['inputs']['format'] == 'auto'
    del client._info['WanImageToVideo']
    client._info['WanImageToVideo'] = None
    with pytest.raises(ComfyError, match=r'has no node WanImageToVideo \(node \d+'):
        client.adapt(graph)


def test_comfyui_starts_from_the_checkout_on_a_free_port(tmp_path):
    checkout = tmp_path / 'ComfyUI'
    checkout.mkdir()
    (checkout / 'main.py').write_text(           # stands in for ComfyUI's main.py: same flags, same protocol
        'import runpy, sys\n'
        f'sys.argv[0] = {str(REPO / "tests" / "fakes" / "comfyui.py")!r}\n'
        f'runpy.run_path(sys.argv[0], run_name="__main__")\n')
    loras = tmp_path / 'loras'
    loras.mkdir()
    (loras / 'mine.safetensors').write_bytes(b'lora')
    server = ManagedComfyUI(checkout, None, tmp_path / 'comfyui.log', model_roots=[tmp_path / 'models'], loras_dir=loras)
    url = server.start(timeout=60)
    try:
        client = ComfyClient(url)
        assert client.system_stats()['system']['comfyui_version'] == 'stand-in'
        listed = client.object_info('LoraLoaderModelOnly')['input']['required']['lora_name'][0]
        assert 'mine.safetensors' in listed                        # our LoRA folder, through extra_model_paths
    finally:
        server.stop()
    with pytest.raises(ComfyError, match='cannot reach'):
        ComfyClient(url, timeout=2).system_stats()
    with pytest.raises(JobError, match='git submodule update --init'):
        ManagedComfyUI(tmp_path / 'missing', None, tmp_path / 'x.log').start()


@pytest.mark.skipif(not os.environ.get('COMFYUI_URL'), reason='COMFYUI_URL is not set: no real ComfyUI to check against')
def test_templates_against_a_real_comfyui():
    client = ComfyClient(os.environ['COMFYUI_URL'])
    stats = client.system_stats()
    assert 'system' in stats
    for variant in sorted(VARIANTS):
        image = None if VARIANTS[variant].task == 't2v' else 'first.png'
        graph, _ = graphs.build(variant, CELL, graphs.model_files(variant), {'main': 'm.safetensors'}, image)
        fitted = client.adapt(graph)
        info = {n['class_type']: client.object_info(n['class_type']) for n in fitted.values()}
        assert graphs.problems(fitted, info) == [], variant


def test_a_comfyui_run_is_refused_at_submit_while_comfyui_is_down(make_app, tiny_model, fake):
    c = make_app(comfyui_url=fake.url).test_client()
    tid = c.post('/api/v1/tasks', json={'form': {'model_path': str(tiny_model)}}).get_json()['id']
    run = {'base': True, 'prompts': ['a fox'], 'backend': 'comfyui', 'steps': 2, 'frames': 5, 'width': 64, 'height': 48}
    assert c.post(f'/api/v1/tasks/{tid}/infer', json=run).status_code == 202          # reachable: queued
    fake.stop()
    r = c.post(f'/api/v1/tasks/{tid}/infer', json=run)
    err = r.get_json()['error']
    assert r.status_code == 503 and r.headers.get('Retry-After'), err
    assert fake.url in err['message'] and 'not reachable' in err['message'] and err['field'] == 'backend'
    status = c.get('/api/v1/inference/comfyui').get_json()
    assert status['error'] and status['error'].split(':')[0] in err['message']          # the client's own reason
    assert c.post(f'/api/v1/tasks/{tid}/infer', json={**run, 'backend': 'embedded'}).status_code == 202
    jobs = c.get(f'/api/v1/jobs?task_id={tid}').get_json()['jobs']
    assert len(jobs) == 2


def test_comfyuis_preview_frames_become_the_cells_live_preview(fake, tmp_path):
    """Binary PREVIEW_IMAGE frames (uint32 event 1, uint32 format 1 = JPEG, the image) reach the running
    cell: written under previews/, named in results.json, announced by `preview` events, newest only."""
    import io
    seen = []
    run = write_job(tmp_path / 'run', fake)
    real = infer.Runner.preview

    def spy(self, cell, step, data, ext, ms=None):
        real(self, cell, step, data, ext, ms)
        man = json.loads((self.run_dir / 'results.json').read_text())
        seen.append((man['cells'][0]['status'], man['cells'][0]['preview'], sorted(p.name for p in
                                                                                  (self.run_dir / 'previews').iterdir())))
    infer.Runner.preview = spy
    try:
        assert infer.main(['--run_dir', str(run)]) == 0
    finally:
        infer.Runner.preview = real
    previews = [e for e in events(run) if e['type'] == 'preview']
    assert [e['step'] for e in previews] == [1, 2, 3, 4] and all(e['cell'] == 'c000' for e in previews)
    assert [e['path'] for e in previews] == [f'previews/c000_s{s:03d}.jpg' for s in (1, 2, 3, 4)]
    assert all(status == 'running' and [Path(path).name] == files for status, path, files in seen)   # newest only
    image = Image.open(io.BytesIO((run / previews[-1]['path']).read_bytes()))
    assert image.format == 'JPEG' and image.size == (64, 64)
    assert image.getpixel((32, 32))[0] == pytest.approx((4 * 40) % 256, abs=6)    # the frame of step 4


def test_no_preview_frames_no_previews(tmp_path):
    server = FakeComfyUI(tmp_path / 'comfy', preview_method='none').start()
    try:
        for folder, name in graphs.model_files('wan2.1-t2v-1.3b').items():
            sub = {'unet': 'diffusion_models', 'clip': 'text_encoders', 'vae': 'vae'}[folder]
            (server.root / 'models' / sub / name).write_bytes(b'weights')
        run = write_job(tmp_path / 'run', server)
        assert infer.main(['--run_dir', str(run)]) == 0
        assert not [e for e in events(run) if e['type'] == 'preview']
        assert json.loads((run / 'results.json').read_text())['cells'][0]['preview'] is None
    finally:
        server.stop()
