"""The ComfyUI backend of the infer job: each cell becomes an API-format graph run by a ComfyUI server.

The server is the one at the `comfyui_url` setting (mode 'external') or one this job starts from the
pinned checkout on its own GPU (mode 'managed'). Per job, each LoRA file is put into ComfyUI's LoRA
folder once and each test image uploaded once (the name ComfyUI answers is the one the graph uses);
per cell, the family's graph template is filled in, fitted to the server's node definitions, run and
followed over the websocket, and the video it saved is fetched with /view. ComfyUI's own latent previews
(binary frames, when the server runs with --preview-method) become the cell's live preview as they come.
"""

import time
from pathlib import Path

from api.jobs.control import Stopped
from api.services.inference.comfyui import graphs
from api.services.inference.comfyui.client import ComfyCancelled, ComfyClient, ComfyGone
from api.services.inference.comfyui.managed import ManagedComfyUI, place_lora
from utils.fsutil import atomic_write_bytes

CONNECT_WAIT_S = 15.0             # how long an unreachable ComfyUI is waited for at the start of a job


def first_frame(path):
    import av
    with av.open(str(path)) as container:
        for frame in container.decode(container.streams.video[0]):
            return frame.to_ndarray(format='rgb24')
    raise ValueError(f'{path}: no video frame')


class ComfyBackend:
    def __init__(self, spec, run_dir, control):
        self.spec = spec
        self.cfg = spec['comfyui']
        self.run_dir = Path(run_dir)
        self.control = control
        self.server = None
        self.client = None
        self.files = graphs.model_files(spec['variant'], spec['model'], self.cfg.get('models'))
        self.loras = {}                      # row id -> {expert: lora name}
        self.images = {}                     # gallery path -> uploaded name

    def open(self):
        url = self.cfg['url']
        if self.cfg['mode'] == 'managed':
            self.server = ManagedComfyUI(self.cfg['path'], self.cfg.get('python'), self.run_dir / 'comfyui.log',
                                         self.cfg.get('model_roots', ()), self.cfg['loras_dir'])
            url = self.server.start()
        self.client = ComfyClient(url)
        deadline = time.monotonic() + CONNECT_WAIT_S
        while True:                              # a ComfyUI being restarted gets a moment to come back
            try:
                self.client.system_stats()
                return
            except ComfyGone:
                if time.monotonic() > deadline:
                    raise
                self.control.check()
                time.sleep(0.5)

    def _lora_names(self, row):
        if row['id'] not in self.loras:
            names = {}
            for f in row['files']:
                suffix = '' if f['expert'] == 'main' else f'-{f["expert"]}'
                name = f'odeo/{row["task_id"]}/{row["job_id"]}-{row["name"]}{suffix}.safetensors'
                names[f['expert']] = place_lora(f['path'], self.cfg['loras_dir'], name)
            self.loras[row['id']] = names
        return self.loras[row['id']]

    def _image_name(self, cell):
        if cell['image'] not in self.images:
            path = Path(self.spec['inputs'][cell['input']]['image_path'])
            self.images[cell['image']] = self.client.upload_image(path.name, path.read_bytes())
        return self.images[cell['image']]

    def generate(self, cell, video_path, on_step, on_preview=None, on_fast=None):
        row = next((r for r in self.spec['loras'] if r and cell['lora'] and r['id'] == cell['lora']['id']), None)
        loras = self._lora_names(row) if row else {}
        image = self._image_name(cell) if cell['image'] else None
        graph, save = graphs.build(self.spec['variant'], {**cell, 'strength': cell['strength'] or 0.0}, self.files,
                                   loras, image, prefix=f'odeo/{cell["id"]}')
        graph = self.client.adapt(graph)
        try:
            outputs = self.client.run(graph, on_progress=on_step, should_stop=self.control.stop_requested,
                                      on_preview=on_preview and (lambda done, data, ext: on_preview(done, data, ext, None)))
        except ComfyCancelled:
            raise Stopped() from None
        data, _ = self.client.fetch_video(outputs, save)
        atomic_write_bytes(video_path, data, durable=False)
        return first_frame(video_path)

    def close(self):
        if self.server:
            self.server.stop()
