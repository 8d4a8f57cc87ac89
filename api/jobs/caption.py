"""The `caption` job: write captions for a dataset's clips with a vision-language model.

    python -m api.jobs.caption --run_dir <data>/runs/captions/<job-id>

Reads job.json's `caption` section (written by api/services/data/captioning.py):
    {dataset, folder, model_path, prompt, overwrite: none|machine|all, files: [...], frames, max_new_tokens}
and for each file, in order: decide (again, just before writing) whether it may be captioned, sample
`frames` frames evenly over the clip (an image is one frame), ask the model, and save the sidecar .txt
marked as machine-written (api/services/data/caption_files.py). `overwrite`: `none` fills only files without a
caption, `machine` also replaces captions a model wrote that nobody changed since, `all` replaces
captions people wrote too. Captions from a metadata table are never touched (they take precedence).

Events (docs/architecture.md): status starting -> captioning -> done | stopped | failed; progress
{phase: caption, step: files handled, total_steps, written, skipped, failed, file, examples_per_s, eta_s}
after every file; heartbeats. Results per file go to <run>/captions.json (artifact kind `report`).
Stops between files when control/stop (or save_quit) appears or on SIGTERM (exit 0, status stopped). Exit 2 when the
model folder cannot caption, 1 on anything unexpected.
"""

import json
import signal
import sys
import time
from pathlib import Path

from api.jobs.control import Control, job_main
from api.services.data.caption_files import CaptionBook, CaptionSkipped
from utils.fsutil import atomic_write_json
from utils.media import MediaError, probe, read_clip, read_image

MAX_SIDE = 640                      # frames are scaled so their longest side is at most this (aspect kept)


def why_not(state, overwrite):
    """Why a file with this caption state may not be (re)captioned under this overwrite mode; None: it may."""
    if state['origin'] == 'table':
        return f'caption comes from {state["source"]}'
    if state['origin'] == 'none' and not state['error']:
        return None
    if overwrite == 'all' or (state['origin'] == 'machine' and overwrite == 'machine'):
        return None
    return 'has a caption a person wrote' if state['origin'] == 'human' else 'has a caption a model wrote'


def frame_size(info):
    scale = min(1.0, MAX_SIDE / max(info.width, info.height))
    return max(16, int(info.width * scale) // 2 * 2), max(16, int(info.height * scale) // 2 * 2)


def sample_frames(path, n):
    """PIL images: n frames evenly over a video (frame k at k / n of its length, by timestamps; one frame:
    the middle), or the image itself."""
    from PIL import Image
    info = probe(path)
    size = frame_size(info)
    if info.kind == 'image':
        arrays = read_image(path, size)
    else:
        n = max(1, min(n, info.frames))
        fps = n / info.duration
        arrays = read_clip(path, fps, 0, n, size) if n > 1 else read_clip(path, 2.0 / info.duration, 1, 1, size)
    return [Image.fromarray(a.numpy()) for a in arrays], info.kind


def device_and_dtype():
    import torch
    if torch.cuda.is_available():
        return 'cuda', torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return 'cpu', torch.float32


def clean(text):
    return ' '.join(text.split()).strip()


def run(run_dir, events):
    run_dir = Path(run_dir)
    job = json.loads((run_dir / 'job.json').read_text(encoding='utf-8'))
    req = job['caption']
    folder, files = Path(req['folder']), list(req['files'])
    control = Control(run_dir)
    signal.signal(signal.SIGTERM, control.on_signal)
    model_name = Path(req['model_path']).name
    events.status('starting', f'loading {model_name}')
    from api.jobs.captioners import CaptionerError, load_captioner
    device, dtype = device_and_dtype()
    try:
        captioner = load_captioner(req['model_path'], device, dtype)
    except (CaptionerError, OSError, ValueError) as e:
        events.status('failed', f'cannot load {req["model_path"]}: {e}')
        return 2
    print(f'loaded {model_name} on {device} ({dtype})', flush=True)
    book = CaptionBook(folder)
    counts = {'written': 0, 'skipped': 0, 'failed': 0}
    results, started = [], time.time()
    events.status('captioning', f'{len(files)} file(s) with {model_name} on {device}')
    stopped = False
    for i, name in enumerate(files):
        stopped = control.stop_requested()
        if stopped:
            events.status('stopped', f'stopped after {i} of {len(files)} file(s): {counts["written"]} written')
            break
        outcome = caption_one(book, folder, name, req, captioner, model_name)
        counts[outcome['result']] += 1
        results.append(outcome)
        print(f'[{i + 1}/{len(files)}] {name}: {outcome["result"]} {outcome.get("reason") or outcome.get("text", "")[:80]}',
              flush=True)
        rate = (i + 1) / max(1e-6, time.time() - started)
        events.progress(phase='caption', step=i + 1, total_steps=len(files), file=name, **counts,
                        examples_per_s=round(rate, 3), eta_s=round((len(files) - i - 1) / rate, 1))
    atomic_write_json(run_dir / 'captions.json', {'dataset': req['dataset'], 'model': req['model_path'],
                                                  'counts': counts, 'files': results})
    events.artifact('report', 'captions.json')
    if not stopped:
        events.status('done', f'{counts["written"]} caption(s) written, {counts["skipped"]} skipped, '
                              f'{counts["failed"]} failed')
    return 0


def caption_one(book, folder, name, req, captioner, model_name):
    why = why_not(book.read(name), req['overwrite'])
    if why:
        return {'file': name, 'result': 'skipped', 'reason': why}
    try:
        frames, kind = sample_frames(folder / name, captioner.frames_wanted or req['frames'])
        text = clean(captioner.caption(frames, req['prompt'].replace('{kind}', kind), req['max_new_tokens']))
    except MediaError as e:
        return {'file': name, 'result': 'failed', 'reason': e.reason}
    except Exception as e:              # one file the model chokes on does not end the job
        return {'file': name, 'result': 'failed', 'reason': f'{type(e).__name__}: {e}'}
    if not text:
        return {'file': name, 'result': 'failed', 'reason': 'the model wrote nothing'}
    try:                                                       # a person may have typed one meanwhile
        book.write(name, text, by='machine', model=model_name, replace_invalid=req['overwrite'] == 'all',
                   unless=lambda state: why_not(state, req['overwrite']))
    except CaptionSkipped as e:
        return {'file': name, 'result': 'skipped', 'reason': str(e)}
    return {'file': name, 'result': 'written', 'text': text}


def main(argv=None):
    return job_main(run, 'Caption a dataset with a vision-language model (a studio job).', argv)


if __name__ == '__main__':
    sys.exit(main())
