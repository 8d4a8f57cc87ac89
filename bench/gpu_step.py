"""Seconds per step, peak GPU memory and model-FLOP utilisation of a LoRA training step on the Wan2.1
1.3B architecture (random weights, so nothing is downloaded) at 480x832x81, through our own path:
the pipeline layers (models/wan/layers.py), the DeepSpeed pipeline engine (1 process, 1 stage),
peft LoRA (rank 32 on every block Linear), activation checkpointing, bf16, AdamW.

    .venv/bin/python bench/gpu_step.py                   # on a machine with an NVIDIA GPU
    .venv/bin/python bench/gpu_step.py --smoke           # tiny dims on the CPU: checks the script runs

Model FLOPs per step follow the usual convention for utilisation: the forward matmuls and attention
(2 FLOPs per multiply-add) times 3 (forward + backward w.r.t. activations and weights) for the
trained network, the same work full fine-tuning would do, so the figure is comparable with published
MFU numbers; LoRA skips the frozen-weight gradients, so the hardware does somewhat less than counted.
Peak bf16 throughput is taken from --peak_tflops (default 989 for H100 SXM, 312 for A100).
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WAN_1_3B = dict(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16, out_channels=16,
                text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True)
SMOKE = dict(WAN_1_3B, num_attention_heads=2, attention_head_dim=16, text_dim=32, ffn_dim=64, num_layers=2)


def model_flops(cfg, tokens, text_tokens=512):
    d = cfg['num_attention_heads'] * cfg['attention_head_dim']
    per_block = (
        2 * tokens * d * 4 * d                       # self-attention q, k, v, o
        + 2 * 2 * tokens * tokens * d                # self-attention scores and weighted sum
        + 2 * tokens * d * 2 * d                     # cross-attention q, o
        + 2 * text_tokens * d * 2 * d                # cross-attention k, v
        + 2 * 2 * tokens * text_tokens * d           # cross-attention scores and weighted sum
        + 2 * tokens * d * cfg['ffn_dim'] * 2        # feed-forward
    )
    return 3 * cfg['num_layers'] * per_block


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--smoke', action='store_true')
    parser.add_argument('--steps', type=int, default=12)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--frames', type=int, default=81)
    parser.add_argument('--height', type=int, default=480)
    parser.add_argument('--width', type=int, default=832)
    parser.add_argument('--rank', type=int, default=32)
    parser.add_argument('--peak_tflops', type=float, default=989.0)
    args = parser.parse_args()
    os.environ.update(RANK='0', LOCAL_RANK='0', WORLD_SIZE='1', MASTER_ADDR='127.0.0.1',
                      MASTER_PORT=os.environ.get('MASTER_PORT', '29677'))
    import deepspeed
    import torch
    from diffusers import WanTransformer3DModel
    from peft import LoraConfig

    from models.wan.adapter import lora_target_modules
    from models.wan.layers import BlockLayer, EmbedLayer, OutputLayer
    from utils.pipeline import ClippedStep, StudioPipelineModule, checkpoint_function

    cuda = torch.cuda.is_available() and not args.smoke
    dtype = torch.bfloat16 if cuda else torch.float32
    cfg = SMOKE if args.smoke else WAN_1_3B
    if args.smoke:
        args.frames, args.height, args.width, args.steps, args.warmup = 9, 64, 64, 3, 1
    deepspeed.init_distributed()
    torch.manual_seed(0)
    transformer = WanTransformer3DModel(**cfg).to(dtype)
    transformer.requires_grad_(False)
    transformer.add_adapter(LoraConfig(r=args.rank, lora_alpha=args.rank, target_modules=lora_target_modules(transformer)))
    for name, p in transformer.named_parameters():
        if '.lora_' in name:
            p.requires_grad_(True)
    layers = [EmbedLayer([transformer], False, False, dtype)] + \
             [BlockLayer([b], transformer.config) for b in transformer.blocks] + [OutputLayer([transformer])]

    def loss_fn(out, labels):
        return torch.nn.functional.mse_loss(out.float(), labels[0].float())

    pipe = StudioPipelineModule(layers=layers, num_stages=1, loss_fn=loss_fn, activation_checkpoint_interval=1,
                                activation_checkpoint_func=checkpoint_function(True), checkpointable_layers=['BlockLayer'])
    params = [p for p in pipe.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    clip = ClippedStep(opt, params, 1.0)
    engine, _, _, _ = deepspeed.initialize(model=pipe, optimizer=opt, config={
        'train_micro_batch_size_per_gpu': 1, 'gradient_accumulation_steps': 1, 'gradient_clipping': 0.0,
        'steps_per_print': 10 ** 9})
    engine.pipeline_enable_backward_allreduce = False
    engine.zero_grad = clip.zero_grad

    f = (args.frames - 1) // 4 + 1
    h, w = args.height // 8, args.width // 8
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 16, f, h, w, generator=g)
    text = torch.randn(1, 512, cfg['text_dim'], generator=g)

    def batches():
        while True:
            t = torch.rand(1, generator=g)
            noise = torch.randn(latents.shape, generator=g)
            yield (((1 - t) * latents + t * noise), t * 1000, text, torch.zeros(1, dtype=torch.long)), ((noise - latents),)

    it = batches()
    times = []
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    for _ in range(args.steps):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        engine.train_batch(it)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    seconds = statistics.median(times[args.warmup:])
    tokens = f * (h // 2) * (w // 2)
    flops = model_flops(cfg, tokens)
    result = {
        'device': torch.cuda.get_device_name() if cuda else 'cpu (smoke)',
        'shape': f'{args.width}x{args.height}x{args.frames}', 'latent_tokens': tokens, 'lora_rank': args.rank,
        'dtype': str(dtype).replace('torch.', ''), 'activation_checkpointing': True,
        's_per_step': round(seconds, 3),
        'peak_memory_gib': round(torch.cuda.max_memory_allocated() / 2 ** 30, 2) if cuda else None,
        'model_tflops_per_step': round(flops / 1e12, 1),
        'mfu': round(flops / seconds / (args.peak_tflops * 1e12), 3) if cuda else None,
    }
    print(json.dumps(result, indent=2))


if __name__ == '__main__':
    main()
