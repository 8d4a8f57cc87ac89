"""A client for ComfyUI's HTTP + WebSocket API (server.py / execution.py of ComfyUI):

    POST /prompt {prompt, client_id}      -> {prompt_id, number, node_errors}; 400 {error, node_errors} when refused
    GET  /ws?clientId=<id>                -> JSON text messages {type, data}: status, execution_start,
                                             execution_cached, executing, progress, executed, execution_success,
                                             execution_error, execution_interrupted; binary frames: a big-endian
                                             uint32 event (1 = PREVIEW_IMAGE) then, for previews, a uint32 image
                                             format (1 = JPEG, 2 = PNG) and the image (servers run with --preview-method)
    GET  /history/<prompt_id>             -> {prompt_id: {prompt, outputs: {node: ui}, status, meta}}
    GET  /view?filename=&subfolder=&type= -> a file
    POST /upload/image (multipart image, type, subfolder, overwrite) -> {name, subfolder, type}; a taken name
                                             comes back renamed ('x (1).png'), the same bytes keep their name
    POST /interrupt, POST /queue {delete: [...]}, GET /object_info[/<class>], GET /system_stats

    client = ComfyClient('http://127.0.0.1:8188')
    outputs = client.run(graph, on_progress=lambda done, total: ..., should_stop=lambda: False,
                         on_preview=lambda done, data, ext: ...)       # ext: 'jpg' or 'png'
    data = client.fetch_video(outputs, save_node_id)

Errors become ComfyError with a message naming the node (class, id, title) and the problem; a server
that cannot be reached or goes away mid-run becomes ComfyGone; a stop asked through should_stop
interrupts the run (POST /interrupt) and drops it from the queue (POST /queue delete), then raises
ComfyCancelled.
"""

import json
import mimetypes
import struct
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

from api.jobs.control import JobError

from .graphs import SOFT_CHOICES, choices_of

VIDEO_EXT = ('.mp4', '.webm', '.mov', '.mkv')
HISTORY_WAIT_S = 10.0             # after execution_success, how long the history entry may take to appear


class ComfyError(JobError):
    """ComfyUI refused or failed the graph; the message names the node and the problem."""


class ComfyGone(ComfyError):
    """ComfyUI cannot be reached, or stopped answering."""


class ComfyCancelled(Exception):
    """The run was interrupted and removed from ComfyUI's queue on our request."""


def _title(graph, node_id):
    node = graph.get(str(node_id)) or {}
    title = (node.get('_meta') or {}).get('title')
    return f'{node.get("class_type", "?")} (node {node_id}{", " + repr(title) if title else ""})'


def describe_refusal(body, graph):
    """The readable message of a 400 from POST /prompt: each failing node with its errors."""
    parts = []
    for node_id, entry in (body.get('node_errors') or {}).items():
        for err in entry.get('errors', []):
            detail = f': {err["details"]}' if err.get('details') else ''
            parts.append(f'{_title(graph, node_id)}: {err.get("message", "error")}{detail}')
    if not parts:
        err = body.get('error') or {}
        if isinstance(err, str):
            parts.append(err)
        else:
            detail = f': {err["details"]}' if err.get('details') else ''
            parts.append(f'{err.get("message", "the graph was refused")}{detail}')
    return 'ComfyUI refused the graph: ' + '; '.join(parts)


def describe_failure(data, graph):
    """The readable message of an execution_error message."""
    node = data.get('node_id')
    what = _title(graph, node) if node is not None else (data.get('node_type') or 'a node')
    kind = data.get('exception_type', 'error').rsplit('.', 1)[-1]
    return f'ComfyUI failed in {what}: {kind}: {data.get("exception_message", "").strip()}'


def _multipart(fields, file_field, filename, data):
    boundary = uuid.uuid4().hex
    out = bytearray()
    for k, v in fields.items():
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
    ctype = mimetypes.guess_type(filename)[0] or 'application/octet-stream'
    out += (f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; filename="{filename}"\r\n'
            f'Content-Type: {ctype}\r\n\r\n').encode()
    out += data + f'\r\n--{boundary}--\r\n'.encode()
    return bytes(out), f'multipart/form-data; boundary={boundary}'


def sampling_steps(graph):
    """Denoising steps the samplers of a graph run in all (progress messages count them per sampler)."""
    total = 0
    for n in graph.values():
        i = n['inputs']
        if n['class_type'] == 'KSampler':
            total += int(i['steps'])
        elif n['class_type'] == 'KSamplerAdvanced':
            total += min(int(i['end_at_step']), int(i['steps'])) - int(i['start_at_step'])
    return max(total, 1)


PREVIEW_IMAGE = 1                        # server.py BinaryEventTypes
PREVIEW_FORMATS = {1: 'jpg', 2: 'png'}   # send_image: the image format number after the event


def preview_image(msg):
    """(image bytes, 'jpg' | 'png') of a binary PREVIEW_IMAGE frame; None for any other frame."""
    if len(msg) < 8:
        return None
    event, fmt = struct.unpack('>II', msg[:8])
    if event != PREVIEW_IMAGE or fmt not in PREVIEW_FORMATS:
        return None
    return bytes(msg[8:]), PREVIEW_FORMATS[fmt]


class ComfyClient:
    def __init__(self, url, timeout=30.0, idle_timeout=1800.0):
        self.url = url.rstrip('/')
        self.timeout = timeout                  # one HTTP request
        self.idle_timeout = idle_timeout        # a run with no message at all for this long is given up
        self._info = {}

    # ---- HTTP ---------------------------------------------------------------------------------
    def _request(self, method, path, body=None, headers=None, raw=False):
        data = body
        headers = dict(headers or {})
        if body is not None and not isinstance(body, bytes):
            data = json.dumps(body).encode()
            headers['Content-Type'] = 'application/json'
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                payload = r.read()
                return r.status, payload if raw else (json.loads(payload) if payload.strip() else None)
        except urllib.error.HTTPError as e:
            payload = e.read()
            try:
                return e.code, json.loads(payload)
            except ValueError:
                return e.code, payload.decode(errors='replace')
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, 'reason', e)
            raise ComfyGone(f'cannot reach ComfyUI at {self.url} ({reason}); is it running? '
                            f'(setting comfyui_url, or comfyui_mode = managed)') from None

    def system_stats(self):
        status, body = self._request('GET', '/system_stats')
        if status != 200 or not isinstance(body, dict):
            raise ComfyGone(f'{self.url} does not answer like ComfyUI (GET /system_stats: {status})')
        return body

    def object_info(self, class_type):
        if class_type not in self._info:
            status, body = self._request('GET', f'/object_info/{urllib.parse.quote(class_type)}')
            self._info[class_type] = (body or {}).get(class_type) if status == 200 and isinstance(body, dict) else None
        return self._info[class_type]

    def upload_image(self, filename, data, subfolder=''):
        """Upload a first frame; returns the name to use in LoadImage (ComfyUI's, which may differ)."""
        fields = {'type': 'input', 'subfolder': subfolder, 'overwrite': 'false'}
        body, ctype = _multipart(fields, 'image', filename, data)
        status, reply = self._request('POST', '/upload/image', body, {'Content-Type': ctype})
        if status != 200 or not isinstance(reply, dict) or not reply.get('name'):
            raise ComfyError(f'ComfyUI refused the upload of {filename} (HTTP {status}: {reply})')
        return f'{reply["subfolder"]}/{reply["name"]}' if reply.get('subfolder') else reply['name']

    def history(self, prompt_id):
        status, body = self._request('GET', f'/history/{urllib.parse.quote(prompt_id)}')
        return (body or {}).get(prompt_id) if status == 200 and isinstance(body, dict) else None

    def view(self, filename, subfolder='', kind='output'):
        q = urllib.parse.urlencode({'filename': filename, 'subfolder': subfolder, 'type': kind})
        status, data = self._request('GET', f'/view?{q}', raw=True)
        if status != 200:
            raise ComfyError(f'ComfyUI has no output file {subfolder + "/" if subfolder else ""}{filename} (HTTP {status})')
        return data

    def cancel(self, prompt_id):
        """Stop our prompt whether it runs (interrupt) or still waits (queue delete)."""
        self._request('POST', '/interrupt', {'prompt_id': prompt_id})
        self._request('POST', '/queue', {'delete': [prompt_id]})

    # ---- graphs -------------------------------------------------------------------------------
    def adapt(self, graph):
        """Fit a graph to this server's node definitions: inputs it does not know are dropped, required
        ones we left out get its default, a file format it lacks falls back to its default. A node class it
        does not have is an error naming it."""
        out = {}
        for node_id, node in graph.items():
            info = self.object_info(node['class_type'])
            if info is None:
                raise ComfyError(f'ComfyUI at {self.url} has no node {_title(graph, node_id)}; '
                                 f'it needs a ComfyUI with Wan support (comfy_extras/nodes_wan.py, nodes_video.py)')
            req, opt = info['input'].get('required', {}), info['input'].get('optional', {})
            inputs = {k: v for k, v in node['inputs'].items() if k in req or k in opt}
            for name, spec in req.items():
                choices = choices_of(spec)
                extra = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
                if name not in inputs and (choices or 'default' in extra):
                    inputs[name] = extra.get('default', choices[0] if choices else None)
                elif name in SOFT_CHOICES and choices and inputs.get(name) not in choices:
                    inputs[name] = extra.get('default', choices[0])
            out[node_id] = {**node, 'inputs': inputs}
        return out

    def submit(self, graph, client_id):
        status, body = self._request('POST', '/prompt', {'prompt': graph, 'client_id': client_id})
        if status != 200 or not isinstance(body, dict) or 'prompt_id' not in body:
            raise ComfyError(describe_refusal(body if isinstance(body, dict) else {'error': str(body)}, graph))
        return body['prompt_id']

    def run(self, graph, on_progress=None, should_stop=None, on_preview=None):
        """Submit and follow one prompt to its end; returns its history entry's outputs {node: ui}."""
        from simple_websocket import Client, ConnectionClosed
        client_id = uuid.uuid4().hex
        ws_url = 'ws' + self.url[4:] + f'/ws?clientId={client_id}'
        try:
            ws = Client.connect(ws_url)
        except (OSError, ConnectionError, Exception) as e:     # simple_websocket raises its own ConnectionError
            raise ComfyGone(f'cannot open ComfyUI\'s websocket at {ws_url} ({e})') from None
        prompt_id = None
        try:
            prompt_id = self.submit(graph, client_id)
            self._follow(ws, graph, prompt_id, on_progress, should_stop or (lambda: False), on_preview)
        except ConnectionClosed:
            raise ComfyGone(f'ComfyUI at {self.url} went away while running the graph (the connection closed)') from None
        except ComfyGone:
            raise
        except BaseException:
            if prompt_id is not None:          # a stop, or anything else: leave nothing of ours running there
                try:
                    self.cancel(prompt_id)
                except ComfyGone:
                    pass
            raise
        finally:
            try:
                ws.close()
            except Exception:
                pass
        deadline = time.monotonic() + HISTORY_WAIT_S      # history is written just after execution_success
        while (entry := self.history(prompt_id)) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if entry is None:
            raise ComfyError(f'ComfyUI finished prompt {prompt_id} but has no history of it')
        return entry.get('outputs') or {}

    def _follow(self, ws, graph, prompt_id, on_progress, should_stop, on_preview=None):
        offset, node, node_max, last, succeeded, done = 0, None, 0, time.monotonic(), None, 0
        total = sampling_steps(graph)
        while True:
            if should_stop():
                raise ComfyCancelled()
            if succeeded and time.monotonic() - succeeded > HISTORY_WAIT_S:
                return
            msg = ws.receive(timeout=0.5)
            if msg is None:
                if time.monotonic() - last > self.idle_timeout:
                    raise ComfyGone(f'ComfyUI at {self.url} sent nothing for {self.idle_timeout:g}s')
                continue
            last = time.monotonic()
            if isinstance(msg, bytes):
                image = preview_image(msg)
                if image and on_preview:
                    on_preview(done, *image)
                continue
            try:
                m = json.loads(msg)
            except ValueError:
                continue
            kind, data = m.get('type'), m.get('data') or {}
            if data.get('prompt_id') not in (None, prompt_id):
                continue
            if kind == 'progress' and on_progress:
                if data.get('node') != node:
                    offset, node = offset + node_max, data.get('node')
                node_max = int(data.get('max') or 0)
                done = min(total, offset + int(data.get('value') or 0))
                on_progress(done, total)
            elif kind == 'execution_error':
                raise ComfyError(describe_failure(data, graph))
            elif kind == 'execution_interrupted':
                raise ComfyError(f'ComfyUI interrupted the run in {_title(graph, data.get("node_id"))} '
                                 f'(cancelled in ComfyUI?)')
            elif kind == 'execution_success':
                succeeded = time.monotonic()           # the history entry follows; `executing` None says so
            elif kind == 'executing' and data.get('node') is None and data.get('prompt_id') == prompt_id:
                return


    def fetch_video(self, outputs, node_id):
        """The bytes and name of the video a SaveVideo node wrote (core: listed under 'images' with 'animated')."""
        ui = outputs.get(str(node_id)) or {}
        for key in ('images', 'videos', 'gifs'):
            for item in ui.get(key) or []:
                if str(item.get('filename', '')).lower().endswith(VIDEO_EXT):
                    return self.view(item['filename'], item.get('subfolder', ''), item.get('type', 'output')), item['filename']
        raise ComfyError(f'ComfyUI\'s output of node {node_id} holds no video: {ui}')
