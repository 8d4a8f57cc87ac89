"""A stand-in for a ComfyUI server: real HTTP and WebSocket on loopback, speaking what ComfyUI's server.py,
execution.py and main.py speak, for tests that cannot run ComfyUI and a 14B model.

    fake = FakeComfyUI(tmp_path / 'comfy').start()      # fake.url, fake.loras_dir, fake.requests
    ...
    fake.die()                                          # the server vanishes mid-run

Endpoints: POST /prompt (validated like execution.validate_prompt: unknown nodes, missing inputs, bad links,
values not in a list -> 400 {error, node_errors}), GET /ws?clientId= (status on connect, then per prompt
execution_start, execution_cached, executing, progress (+ a binary preview frame: uint32 1 = PREVIEW_IMAGE,
uint32 1 = JPEG, a real 64x64 JPEG whose colour follows the step; none with preview_method='none'), executed,
execution_success, executing {node: None}; or execution_error / execution_interrupted), GET /history[/<id>],
GET /view, POST /upload/image (a taken name becomes 'x (1).png' unless the bytes are the same), POST /interrupt,
GET|POST /queue, GET /object_info[/<class>], GET /system_stats. Prompts run one at a time on a worker thread;
SaveVideo writes a real H.264 MP4 whose pixels depend on seed, prompt, LoRAs and strengths, and first frame.

Knobs: step_time (seconds per sampling step), fail_in (a class_type that raises when it runs), die_at_step
(the server goes away at this sampling step). Run as a script it takes ComfyUI's own flags (--listen, --port,
--extra-model-paths-config), so a `main.py` that runs it stands in for the checkout in managed mode.
"""

import hashlib
import json
import logging
import os
import socket
import struct
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
from flask import Flask, Response, jsonify, request, send_file
from werkzeug.serving import make_server

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from api.services.inference.comfyui.client import sampling_steps  # noqa: E402
from api.services.inference.comfyui.graphs import NODES, OUTPUT_NODES, choices_of, object_info  # noqa: E402
from utils.media import write_video  # noqa: E402

FOLDERS = {('UNETLoader', 'unet_name'): 'diffusion_models', ('CLIPLoader', 'clip_name'): 'text_encoders',
           ('VAELoader', 'vae_name'): 'vae', ('CLIPVisionLoader', 'clip_name'): 'clip_vision',
           ('LoraLoaderModelOnly', 'lora_name'): 'loras'}
SAMPLERS = ('KSampler', 'KSamplerAdvanced')
LATENTS = ('EmptyHunyuanLatentVideo', 'WanImageToVideo', 'Wan22ImageToVideoLatent')


def preview_jpeg(step, size=64):
    """A real JPEG, as ComfyUI's latent previewers send: a flat colour that changes with the step."""
    import io

    from PIL import Image
    buf = io.BytesIO()
    Image.new('RGB', (size, size), ((step * 40) % 256, 90, 200)).save(buf, format='JPEG', quality=80)
    return buf.getvalue()


class _Upgraded(Response):
    """After a websocket session the connection belongs to it: tell werkzeug not to write a response."""

    def __call__(self, *args, **kwargs):
        raise ConnectionError('websocket closed')


class FakeComfyUI:
    def __init__(self, root, port=0, step_time=0.02, fail_in=None, die_at_step=None, extra_loras=(),
                 preview_method='auto'):
        self.preview_method = preview_method
        self.root = Path(root)
        for d in ('input', 'output', 'temp', *(f'models/{f}' for f in set(FOLDERS.values()))):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        self.loras_dir = self.root / 'models' / 'loras'
        self.extra_loras = [Path(p) for p in extra_loras]
        self.port, self.step_time, self.fail_in, self.die_at_step = port, step_time, fail_in, die_at_step
        self.requests = []                  # (method, path, JSON body or form fields)
        self.history = {}
        self.pending = []                   # (number, prompt_id, prompt, extra_data, outputs)
        self.running = None
        self.sockets = {}                   # client id -> (websocket, lock)
        self.number = 0
        self.dead = False
        self._cond = threading.Condition()
        self._interrupt = threading.Event()
        self._server = None
        self.app = self._make_app()

    # ---- lifecycle ----------------------------------------------------------------------------
    @property
    def url(self):
        return f'http://127.0.0.1:{self.port}'

    def start(self):
        logging.getLogger('werkzeug').setLevel(logging.ERROR)
        self._server = make_server('127.0.0.1', self.port, self.app, threaded=True)
        self.port = self._server.server_port
        threading.Thread(target=self._server.serve_forever, name='fake-comfyui-http', daemon=True).start()
        threading.Thread(target=self._worker, name='fake-comfyui-worker', daemon=True).start()
        return self

    def stop(self):
        self.dead = True
        with self._cond:
            self._cond.notify_all()
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        for ws, _ in list(self.sockets.values()):
            try:
                ws.close()
            except Exception:
                pass

    def die(self):
        """Vanish as a crashed server does: nothing listening on the port any more, then sockets cut.

        The port is closed before this returns (and before any client can see the cut), so a test may start a
        new server on the same port as soon as a client has noticed. Never called on the accept-loop thread."""
        self.dead = True
        server, self._server = self._server, None
        if server:
            server.shutdown()
            server.server_close()
        for ws, _ in list(self.sockets.values()):
            try:
                ws.sock.shutdown(socket.SHUT_RDWR)
                ws.sock.close()
            except OSError:
                pass
        with self._cond:
            self._cond.notify_all()

    # ---- files ----------------------------------------------------------------------------------
    def files(self, folder):
        roots = [self.root / 'models' / folder] + (self.extra_loras if folder == 'loras' else [])
        out = []
        for r in roots:
            out += sorted(p.relative_to(r).as_posix() for p in r.rglob('*') if p.is_file() and not p.name.startswith('.'))
        return out

    def info(self):
        listed = {key: self.files(folder) for key, folder in FOLDERS.items()}
        listed[('LoadImage', 'image')] = sorted(p.name for p in (self.root / 'input').iterdir() if p.is_file())
        return object_info(listed)

    # ---- messages -------------------------------------------------------------------------------
    def send(self, client_id, kind, data):
        target = self.sockets.get(client_id) if client_id else None
        for ws, lock in ([target] if target else []):
            with lock:
                try:
                    ws.send(json.dumps({'type': kind, 'data': data}) if isinstance(data, dict) else data)
                except Exception:
                    pass

    def queue_info(self):
        return {'exec_info': {'queue_remaining': len(self.pending) + (1 if self.running else 0)}}

    # ---- validation (execution.validate_prompt) -----------------------------------------------
    def validate(self, prompt):
        for nid, node in prompt.items():
            if not isinstance(node, dict) or node.get('class_type') not in NODES:
                cls = node.get('class_type') if isinstance(node, dict) else None
                return {'type': 'invalid_prompt', 'message': f'Cannot execute because node {cls} does not exist.',
                        'details': f"Node ID '#{nid}'", 'extra_info': {}}, {}, []
        outputs = [nid for nid, n in prompt.items() if n['class_type'] in OUTPUT_NODES]
        if not outputs:
            return {'type': 'prompt_no_outputs', 'message': 'Prompt has no outputs', 'details': '', 'extra_info': {}}, {}, []
        info, node_errors, seen = self.info(), {}, {}
        good = [o for o in outputs if self._valid(prompt, o, info, node_errors, seen)]
        if not good:
            details = '\n'.join(f'{e["message"]}: {e["details"]}' for n in node_errors.values() for e in n['errors'])
            return {'type': 'prompt_outputs_failed_validation', 'message': 'Prompt outputs failed validation',
                    'details': details, 'extra_info': {}}, node_errors, []
        return None, node_errors, good

    def _valid(self, prompt, nid, info, node_errors, seen):
        if nid in seen:
            return seen[nid]
        node = prompt[nid]
        cls = node['class_type']
        required = info[cls]['input']['required']
        errors, ok = [], True
        for name, spec in required.items():
            if name not in node['inputs']:
                errors.append({'type': 'required_input_missing', 'message': 'Required input is missing',
                               'details': name, 'extra_info': {'input_name': name}})
                continue
            value = node['inputs'][name]
            if isinstance(value, list):
                src = prompt.get(value[0]) if len(value) == 2 else None
                outs = info[src['class_type']]['output'] if src and src.get('class_type') in info else []
                if src is None or not isinstance(value[1], int) or value[1] >= len(outs):
                    errors.append({'type': 'bad_linked_input', 'message': 'Bad linked input, must be a length-2 list of '
                                   '[node_id, slot_index]', 'details': name, 'extra_info': {'input_name': name}})
                elif outs[value[1]] != spec[0]:
                    errors.append({'type': 'return_type_mismatch', 'message': 'Return type mismatch between linked nodes',
                                   'details': f'{name}, received_type({outs[value[1]]}) mismatch input_type({spec[0]})',
                                   'extra_info': {'input_name': name}})
                elif not self._valid(prompt, value[0], info, node_errors, seen):
                    ok = False
                continue
            choices = choices_of(spec)
            if cls == 'LoadImage':
                if not (self.root / 'input' / value).is_file():
                    errors.append({'type': 'custom_validation_failed', 'message': 'Custom validation failed for node',
                                   'details': f'image - Invalid image file: {value}', 'extra_info': {'input_name': name}})
            elif choices is not None and value not in choices:
                listed = f'(list of length {len(choices)})' if len(choices) > 20 else str(choices)
                errors.append({'type': 'value_not_in_list', 'message': 'Value not in list',
                               'details': f"{name}: '{value}' not in {listed}", 'extra_info': {'input_name': name}})
            elif spec[0] in ('INT', 'FLOAT'):
                try:
                    (int if spec[0] == 'INT' else float)(value)
                except (TypeError, ValueError) as e:
                    errors.append({'type': 'invalid_input_type', 'message': f'Failed to convert an input value to a '
                                   f'{spec[0]} value', 'details': f'{name}, {value}, {e}', 'extra_info': {'input_name': name}})
        if errors:
            node_errors[nid] = {'errors': errors, 'dependent_outputs': [], 'class_type': cls}
        seen[nid] = ok and not errors
        return seen[nid]

    # ---- execution (execution.PromptExecutor, main.prompt_worker) ---------------------------
    def _worker(self):
        while True:
            with self._cond:
                while not self.pending and not self.dead:
                    self._cond.wait(0.5)
                if self.dead:
                    return
                self.pending.sort(key=lambda item: item[0])
                item = self.pending.pop(0)
                self.running = item
            self._interrupt.clear()
            try:
                self._execute(*item)
            finally:
                self.running = None
                for cid in list(self.sockets):
                    self.send(cid, 'status', {'status': self.queue_info()})

    def _order(self, prompt, nid, out):
        for v in prompt[nid]['inputs'].values():
            if isinstance(v, list) and v[0] not in out:
                self._order(prompt, v[0], out)
        if nid not in out:
            out.append(nid)
        return out

    def _execute(self, number, prompt_id, prompt, extra, outputs):
        cid = extra.get('client_id')
        messages, executed, ui_outputs = [], [], {}

        def msg(kind, data):
            data = {**data, 'prompt_id': prompt_id, 'timestamp': int(time.time() * 1000)}
            messages.append([kind, data])
            self.send(cid, kind, data)

        msg('execution_start', {})
        msg('execution_cached', {'nodes': []})
        order = []
        for o in outputs:
            self._order(prompt, o, order)
        status, step = 'success', 0
        for nid in order:
            node = prompt[nid]
            cls = node['class_type']
            self.send(cid, 'executing', {'node': nid, 'display_node': nid, 'prompt_id': prompt_id})
            if cls == self.fail_in:
                msg('execution_error', {'node_id': nid, 'node_type': cls, 'executed': list(executed),
                                        'exception_message': 'Allocation on device 0 would exceed allowed memory. '
                                        '(out of memory)\nCurrently allocated: 77.5 GiB',
                                        'exception_type': 'torch.OutOfMemoryError',
                                        'traceback': ['  File "execution.py", line 496, in execute\n'],
                                        'current_inputs': {}, 'current_outputs': {}})
                status = 'error'
                break
            if cls in SAMPLERS:
                n = sampling_steps({nid: node})
                for v in range(1, n + 1):
                    step += 1
                    if self.die_at_step is not None and step >= self.die_at_step:
                        self.die()
                        return
                    if self._interrupt.is_set():
                        msg('execution_interrupted', {'node_id': nid, 'node_type': cls, 'executed': list(executed)})
                        status = 'error'
                        break
                    time.sleep(self.step_time)
                    self.send(cid, 'progress', {'value': v, 'max': n, 'prompt_id': prompt_id, 'node': nid})
                    if self.preview_method != 'none':
                        self.send(cid, 'preview', struct.pack('>II', 1, 1) + preview_jpeg(step))
                if status != 'success':
                    break
            if cls == 'SaveVideo':
                ui_outputs[nid] = self._save_video(prompt, nid)
                self.send(cid, 'executed', {'node': nid, 'display_node': nid, 'output': ui_outputs[nid],
                                            'prompt_id': prompt_id})
            executed.append(nid)
        if status == 'success':
            msg('execution_success', {})
        self.history[prompt_id] = {
            'prompt': [number, prompt_id, prompt, extra, outputs], 'outputs': ui_outputs,
            'status': {'status_str': status, 'completed': status == 'success', 'messages': messages},
            'meta': {n: {'node_id': n, 'display_node': n, 'parent_node': None, 'real_node_id': n} for n in ui_outputs}}
        self.send(cid, 'executing', {'node': None, 'prompt_id': prompt_id})

    def _save_video(self, prompt, nid):
        """A real MP4 whose look depends on what a model's output would: seed, prompt, LoRAs, first frame."""
        nodes = prompt.values()
        latent = next(n['inputs'] for n in nodes if n['class_type'] in LATENTS)
        w, h, frames = int(latent['width']), int(latent['height']), int(latent['length'])
        fps = next(float(n['inputs']['fps']) for n in nodes if n['class_type'] == 'CreateVideo')
        key = json.dumps(sorted([(n['class_type'], {k: v for k, v in n['inputs'].items() if not isinstance(v, list)})
                                 for n in nodes if n['class_type'] in ('LoraLoaderModelOnly', 'CLIPTextEncode', 'LoadImage')
                                 or n['class_type'] in SAMPLERS], key=json.dumps))
        seed = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)
        rng = np.random.default_rng(seed)
        base = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        video = np.stack([np.roll(base, i * 2, axis=1) for i in range(frames)])
        prefix = next(n['inputs']['filename_prefix'] for n in nodes if n['class_type'] == 'SaveVideo')
        sub, stem = (prefix.rsplit('/', 1) if '/' in prefix else ('', prefix))
        folder = self.root / 'output' / sub
        counter = len(list(folder.glob(f'{stem}_*'))) + 1 if folder.is_dir() else 1
        name = f'{stem}_{counter:05}_.mp4'
        write_video(folder / name, video, fps)
        return {'images': [{'filename': name, 'subfolder': sub, 'type': 'output'}], 'animated': [True]}

    # ---- HTTP ---------------------------------------------------------------------------------
    def _make_app(self):
        app = Flask('fake_comfyui')
        fake = self

        @app.before_request
        def record():
            body = None
            if request.method == 'POST':
                body = request.get_json(silent=True) if request.is_json else dict(request.form)
            fake.requests.append((request.method, request.path, body))

        @app.route('/ws', websocket=True)
        def ws():
            from simple_websocket import ConnectionClosed, Server
            sock = Server(request.environ)
            sid = request.args.get('clientId') or uuid.uuid4().hex
            fake.sockets[sid] = (sock, threading.Lock())
            fake.send(sid, 'status', {'status': fake.queue_info(), 'sid': sid})
            try:
                while True:
                    sock.receive()
            except ConnectionClosed:
                pass
            finally:
                fake.sockets.pop(sid, None)
            return _Upgraded()

        @app.get('/system_stats')
        def system_stats():
            return {'system': {'os': os.name, 'comfyui_version': 'stand-in', 'python_version': sys.version,
                               'argv': ['main.py']}, 'devices': [{'name': 'cpu', 'type': 'cpu', 'index': None}]}

        @app.get('/object_info')
        def all_info():
            return fake.info()

        @app.get('/object_info/<node_class>')
        def one_info(node_class):
            info = fake.info()
            return {node_class: info[node_class]} if node_class in info else {}

        @app.post('/prompt')
        def post_prompt():
            data = request.get_json(silent=True) or {}
            if 'prompt' not in data:
                return jsonify({'error': 'no prompt', 'node_errors': []}), 400
            error, node_errors, outputs = fake.validate(data['prompt'])
            if error:
                return jsonify({'error': error, 'node_errors': node_errors}), 400
            prompt_id = str(uuid.uuid4())
            with fake._cond:
                number = fake.number
                fake.number += 1
                extra = dict(data.get('extra_data') or {})
                if 'client_id' in data:
                    extra['client_id'] = data['client_id']
                fake.pending.append((number, prompt_id, data['prompt'], extra, outputs))
                fake._cond.notify_all()
            return {'prompt_id': prompt_id, 'number': number, 'node_errors': node_errors}

        @app.get('/queue')
        def get_queue():
            return {'queue_running': [list(fake.running)] if fake.running else [],
                    'queue_pending': [list(p) for p in fake.pending]}

        @app.post('/queue')
        def post_queue():
            data = request.get_json(silent=True) or {}
            with fake._cond:
                if data.get('clear'):
                    fake.pending.clear()
                for pid in data.get('delete') or []:
                    fake.pending = [p for p in fake.pending if p[1] != pid]
            return Response(status=200)

        @app.post('/interrupt')
        def interrupt():
            data = request.get_json(silent=True) or {}
            running = fake.running
            if running and (not data.get('prompt_id') or data['prompt_id'] == running[1]):
                fake._interrupt.set()
            return Response(status=200)

        @app.get('/history')
        def all_history():
            return fake.history

        @app.get('/history/<prompt_id>')
        def history(prompt_id):
            return {prompt_id: fake.history[prompt_id]} if prompt_id in fake.history else {}

        @app.get('/view')
        def view():
            name = request.args.get('filename', '')
            if not name or name.startswith('/') or '..' in name:
                return Response(status=400)
            folder = fake.root / request.args.get('type', 'output') / request.args.get('subfolder', '')
            path = folder / os.path.basename(name)
            if '..' in request.args.get('subfolder', '') or not path.is_file():
                return Response(status=404)
            return send_file(path, download_name=path.name)

        @app.post('/upload/image')
        def upload():
            image = request.files.get('image')
            if not image or not image.filename:
                return Response(status=400)
            sub = request.form.get('subfolder', '')
            folder = fake.root / (request.form.get('type') or 'input') / sub
            folder.mkdir(parents=True, exist_ok=True)
            data = image.read()
            name = image.filename
            stem, ext = os.path.splitext(name)
            i = 1
            while (folder / name).exists() and request.form.get('overwrite') not in ('true', '1'):
                if hashlib.sha256((folder / name).read_bytes()).digest() == hashlib.sha256(data).digest():
                    break                                   # the same bytes: ComfyUI keeps the name
                name = f'{stem} ({i}){ext}'
                i += 1
            (folder / name).write_bytes(data)
            return {'name': name, 'subfolder': sub, 'type': request.form.get('type') or 'input'}

        return app


def main(argv=None):
    """ComfyUI's main.py flags: serve the stand-in from the current directory until killed."""
    import argparse
    p = argparse.ArgumentParser()
    p.add_argument('--listen', default='127.0.0.1')
    p.add_argument('--port', type=int, default=8188)
    p.add_argument('--extra-model-paths-config', default=None)
    p.add_argument('--disable-auto-launch', action='store_true')
    p.add_argument('--cpu', action='store_true')
    p.add_argument('--preview-method', default='none', choices=('none', 'auto', 'latent2rgb', 'taesd'))
    args = p.parse_args(argv)
    extra = []
    if args.extra_model_paths_config:
        doc = json.loads(Path(args.extra_model_paths_config).read_text())
        extra = [Path(v['base_path']) / v['loras'] for v in doc.values() if 'loras' in v]
    fake = FakeComfyUI(Path.cwd(), port=args.port, extra_loras=extra, preview_method=args.preview_method).start()
    print(f'stand-in ComfyUI on {fake.url} (cpu={args.cpu})', flush=True)
    while True:
        time.sleep(3600)


if __name__ == '__main__':
    main()
