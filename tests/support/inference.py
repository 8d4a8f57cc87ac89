"""Helpers for the Inference studio's tests: LoRA files in the trainer's format without training,
decoding videos, and waiting on jobs."""

from pathlib import Path

import numpy as np


def make_lora(model_dir, out_file, seed=0, expert='main', rank=4, scale=0.5):
    """A LoRA for the tiny model at `model_dir` in the trainer's ComfyUI format
    (diffusion_model.<official module>.lora_A/B.weight, odeo.* metadata), random but non-zero, so it
    visibly changes what the model generates."""
    import torch
    from safetensors.torch import save_file

    from models.wan import checkpoints, keymaps, weights
    from models.wan.adapter import lora_target_modules
    ckpt = checkpoints.inspect_checkpoint({'ckpt_path': str(model_dir)})
    key = expert if expert in ckpt.transformers else next(iter(ckpt.transformers))
    transformer = weights.load_transformer(ckpt, key, torch.float32)
    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    for name in lora_target_modules(transformer):
        linear = transformer.get_submodule(name)
        official = keymaps.diffusers_to_official(name)
        tensors[f'diffusion_model.{official}.lora_A.weight'] = torch.randn(rank, linear.in_features, generator=gen) * scale
        tensors[f'diffusion_model.{official}.lora_B.weight'] = torch.randn(linear.out_features, rank, generator=gen) * scale
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    meta = {'format': 'pt', 'odeo.variant': ckpt.variant.id, 'odeo.rank': str(rank),
            'odeo.alpha': str(rank), 'odeo.expert': expert}
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(out_file), metadata=meta)
    return out_file


def read_video(path):
    """uint8 frames [F, H, W, 3] and the frame rate of a video file, decoded with PyAV."""
    import av
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format='rgb24') for f in container.decode(stream)]
        rate = float(stream.average_rate) if stream.average_rate else None
        codec = stream.codec_context.name
    return np.stack(frames), rate, codec


def mean_abs_diff(a, b):
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


def saved_training_run(studio, task_id, model_dir, epochs=2, steps_per_epoch=4):
    """A finished training job of `task_id` with one real LoRA per epoch (as train.py leaves them: the
    frozen config, epochN/ with the adapter and adapter_config.json, artifact events)."""
    import json
    import time

    from api.services.jobs.store import new_job, new_job_id
    job_id = new_job_id()
    run = studio.paths.job_dir(task_id, job_id)
    run.mkdir(parents=True)
    (run / 'config.toml').write_text(f"[model]\ntype = 'wan'\nckpt_path = '{model_dir}'\ndtype = 'float32'\n")
    lines = []
    for e in range(1, epochs + 1):
        make_lora(model_dir, run / f'epoch{e}' / 'adapter_model.safetensors', seed=e)
        (run / f'epoch{e}' / 'adapter_config.json').write_text(json.dumps({'peft_type': 'LORA', 'experts': ['main']}))
        lines.append({'time': time.time(), 'type': 'artifact', 'kind': 'lora', 'epoch': e, 'step': e * steps_per_epoch,
                      'path': f'epoch{e}/adapter_model.safetensors', 'expert': 'main'})
    (run / 'events.jsonl').write_text(''.join(json.dumps(x) + '\n' for x in lines))
    job = new_job(job_id, task_id, studio.paths.relative(run), {'gpus': 1, 'gpu_ids': None},
                  {'action': 'start', 'job_id': None, 'checkpoint': None})
    job.update(state='done', finished_at=time.time())
    studio.jobs.save(job)
    return job
