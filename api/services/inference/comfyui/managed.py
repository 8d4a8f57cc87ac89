"""ComfyUI files and processes the studio manages itself.

- `place_lora`: put a LoRA where ComfyUI finds it (a folder it scans for `loras`): a hard link when the
  folders share a file system, else a copy written under a temporary name and renamed; returns the name
  LoraLoaderModelOnly takes ('odeo/<task>/<job>-epoch3.safetensors').
- `ManagedComfyUI`: `python main.py --listen 127.0.0.1 --port P` started from the pinned checkout
  (submodules/ComfyUI, `git submodule update --init`) inside an infer job, so it runs on the job's GPU
  (CUDA_VISIBLE_DEVICES) on a free loopback port, with an extra_model_paths file that adds the studio's
  model roots (ComfyUI's folder names: diffusion_models, text_encoders, vae, clip_vision, loras) and its
  LoRA folder; stopped when the job ends.
"""

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from api.jobs.control import JobError

from ...jobs.ports import free_port
from .client import ComfyGone

MODEL_FOLDERS = ('diffusion_models', 'text_encoders', 'vae', 'clip_vision', 'loras')


def place_lora(src, loras_dir, name):
    """Make `src` available as `<loras_dir>/<name>`; an identical file already there is kept."""
    src, dst = Path(src), Path(loras_dir) / name
    if not Path(loras_dir).is_dir():
        raise JobError(f'the ComfyUI LoRA folder {loras_dir} does not exist; set comfyui_loras_dir to a folder '
                       f'your ComfyUI scans for LoRAs (its models/loras, or one named in extra_model_paths.yaml)')
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        a, b = src.stat(), dst.stat()
        if (a.st_ino, a.st_dev) == (b.st_ino, b.st_dev) or (a.st_size == b.st_size and b.st_mtime_ns >= a.st_mtime_ns):
            return name.replace(os.sep, '/')
    tmp = dst.with_name(f'.{dst.name}.{os.getpid()}.tmp')
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
    return name.replace(os.sep, '/')


def extra_model_paths(path, model_roots, loras_dir):
    """Write ComfyUI's extra_model_paths file (YAML; JSON is valid YAML) naming our folders."""
    doc = {f'odeo_models_{i}': {'base_path': str(root), **{f: f for f in MODEL_FOLDERS}}
           for i, root in enumerate(model_roots)}
    doc['odeo_loras'] = {'base_path': str(loras_dir), 'loras': '.'}
    Path(path).write_text(json.dumps(doc, indent=2), encoding='utf-8')
    return path


class ManagedComfyUI:
    def __init__(self, checkout, python, log_path, model_roots=(), loras_dir=None):
        self.checkout = Path(checkout)
        self.python = python or sys.executable
        self.log_path = Path(log_path)
        self.model_roots = list(model_roots)
        self.loras_dir = loras_dir
        self.config_path = self.log_path.with_name('comfyui_paths.yaml')
        self.proc = None
        self.url = None

    def start(self, timeout=600.0):
        main = self.checkout / 'main.py'
        if not main.is_file():
            raise JobError(f'{main} not found: fetch the pinned ComfyUI with `git submodule update --init` '
                           f'(or set comfyui_path), or use comfyui_mode = external with comfyui_url')
        port = free_port()
        args = [self.python, str(main), '--listen', '127.0.0.1', '--port', str(port), '--disable-auto-launch',
                '--preview-method', 'auto']                   # latent previews over /ws: the cells' live previews
        if self.loras_dir or self.model_roots:
            args += ['--extra-model-paths-config', str(extra_model_paths(self.config_path, self.model_roots,
                                                                           self.loras_dir or self.checkout))]
        if os.environ.get('CUDA_VISIBLE_DEVICES', None) == '':
            args.append('--cpu')
        self.log = open(self.log_path, 'ab')
        self.proc = subprocess.Popen(args, cwd=str(self.checkout), stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.url = f'http://127.0.0.1:{port}'
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ComfyGone(f'ComfyUI ({main}) exited with code {self.proc.returncode} while starting: '
                                f'{self._tail()}')
            try:
                with urllib.request.urlopen(self.url + '/system_stats', timeout=2) as r:
                    if r.status == 200:
                        return self.url
            except OSError:
                pass
            time.sleep(0.5)
        self.stop()
        raise ComfyGone(f'ComfyUI ({main}) did not answer on {self.url} within {timeout:g}s: {self._tail()}')

    def _tail(self, n=600):
        try:
            return self.log_path.read_bytes()[-n:].decode(errors='replace').strip() or '(no output)'
        except OSError:
            return '(no log)'

    def stop(self, grace=10.0):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.log.close()
        self.proc = None
