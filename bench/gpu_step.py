"""Seconds per step, peak GPU memory and model-FLOP utilisation of a LoRA training step on the Wan2.1
1.3B architecture (random weights, so nothing is downloaded) at 480x832x81, through our own path:
the pipeline layers (models/wan/layers.py), the DeepSpeed pipeline engine (1 process, 1 stage),
peft LoRA (rank 32 on every block Linear), activation checkpointing, bf16, AdamW.

    .venv/bin/python bench/gpu_step.py                   # on a machine with an NVIDIA GPU
    .venv/bin/python bench/gpu_step.py --smoke           # tiny dims on the CPU: checks the script runs
    .venv/bin/python bench/gpu_step.py --model 14b --width 512 --height 512 --blocks_to_swap 32 \
        --float8 --checkpointing unsloth --memory_cap_gib 24     # the 24 GB block-swap recipe
    .venv/bin/python bench/gpu_step.py --plain           # the same step without DeepSpeed and our layers

--plain runs diffusers' transformer directly (its own gradient checkpointing, MSE, backward, AdamW)
on the same inputs, the baseline our step is compared with. --measure_peak times a large bf16 matmul
on this card and reports MFU against that instead of --peak_tflops. --memory_cap_gib caps what the
process may allocate (torch.cuda.set_per_process_memory_fraction), as on a smaller card.

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
WAN_14B = dict(WAN_1_3B, num_attention_heads=40, ffn_dim=13824, num_layers=40)
SMOKE = dict(WAN_1_3B, num_attention_heads=2, attention_head_dim=16, text_dim=32, ffn_dim=64, num_layers=4)


def measured_peak_tflops(torch, size=8192, repeats=50):
    """bf16 matmul throughput of this card, measured: the denominator of MFU."""
    a = torch.randn(size, size, device='cuda', dtype=torch.bfloat16)
    b = torch.randn(size, size, device='cuda', dtype=torch.bfloat16)
    for _ in range(5):
        a @ b
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize()
    return 2 * size ** 3 * repeats / (time.perf_counter() - t0) / 1e12


def random_transformer(torch, cfg, dtype):
    """Random weights without the cost of the modules' own init (14B on the CPU): built on the meta
    device, then filled in `dtype`."""
    from diffusers import WanTransformer3DModel
    with torch.device('meta'):
        transformer = WanTransformer3DModel(**cfg)
    transformer = transformer.to_empty(device='cpu').to(dtype)
    with torch.no_grad():
        for p in transformer.parameters():
            p.normal_(0, 0.02)
    return transformer


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
    parser.add_argument('--measure_peak', action='store_true')
    parser.add_argument('--model', choices=['1.3b', '14b'], default='1.3b')
    parser.add_argument('--blocks_to_swap', type=int, default=0)
    parser.add_argument('--float8', action='store_true', help='frozen weights stored in float8_e4m3fn')
    parser.add_argument('--checkpointing', choices=['true', 'unsloth'], default='true')
    parser.add_argument('--memory_cap_gib', type=float)
    parser.add_argument('--plain', action='store_true')
    parser.add_argument('--out', help='also write the result as JSON here')
    args = parser.parse_args()
    os.environ.update(RANK='0', LOCAL_RANK='0', WORLD_SIZE='1', MASTER_ADDR='127.0.0.1',
                      MASTER_PORT=os.environ.get('MASTER_PORT', '29677'))
    import deepspeed
    import torch
    from peft import LoraConfig

    from models.wan.adapter import lora_target_modules
    from models.wan.layers import BlockLayer, EmbedLayer, OutputLayer
    from utils.pipeline import ClippedStep, StudioPipelineModule, checkpoint_function

    cuda = torch.cuda.is_available() and not args.smoke
    dtype = torch.bfloat16 if cuda else torch.float32
    cfg = SMOKE if args.smoke else {'1.3b': WAN_1_3B, '14b': WAN_14B}[args.model]
    if args.smoke:
        args.frames, args.height, args.width, args.steps, args.warmup = 9, 64, 64, 3, 1
        args.blocks_to_swap = min(args.blocks_to_swap, cfg['num_layers'] - 1)
    if cuda and args.memory_cap_gib:
        torch.cuda.set_per_process_memory_fraction(
            min(1.0, args.memory_cap_gib * 2 ** 30 / torch.cuda.get_device_properties(0).total_memory))
    peak_tflops = measured_peak_tflops(torch) if cuda and args.measure_peak else args.peak_tflops
    deepspeed.init_distributed()
    torch.manual_seed(0)
    transformer = random_transformer(torch, cfg, dtype)
    transformer.requires_grad_(False)
    if args.float8:
        transformer.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=dtype)
    transformer.add_adapter(LoraConfig(r=args.rank, lora_alpha=args.rank, target_modules=lora_target_modules(transformer)))
    for name, p in transformer.named_parameters():
        if '.lora_' in name:
            p.data = p.data.to(dtype)       # peft makes LoRA weights in the base weight's dtype (float8 storage)
            p.requires_grad_(True)
    layers = [EmbedLayer([transformer], False, False, dtype)] + \
             [BlockLayer([b], transformer.config) for b in transformer.blocks] + [OutputLayer([transformer])]

    def loss_fn(out, labels):
        return torch.nn.functional.mse_loss(out.float(), labels[0].float())

    device = torch.device('cuda' if cuda else 'cpu')
    mode = 'unsloth' if args.checkpointing == 'unsloth' else True
    swapper = None
    if args.plain:
        transformer.enable_gradient_checkpointing()
        transformer.to(device)
        params = [p for p in transformer.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-4)

        def train_batch(it):
            (x, t, text, _), (target,) = next(it)
            out = transformer(hidden_states=x.to(device, dtype), timestep=t.to(device),
                              encoder_hidden_states=text.to(device, dtype), return_dict=False)[0]
            loss_fn(out, (target.to(device),)).backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
    else:
        pipe = StudioPipelineModule(layers=layers, num_stages=1, loss_fn=loss_fn, activation_checkpoint_interval=1,
                                    activation_checkpoint_func=checkpoint_function(mode), checkpointable_layers=['BlockLayer'])
        if args.blocks_to_swap:     # before deepspeed.initialize moves the stage, as train.py does
            from utils.offload import BlockSwapper
            swapper = BlockSwapper(layers[1:1 + args.blocks_to_swap], device)
        params = [p for p in pipe.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-4)
        clip = ClippedStep(opt, params, 1.0)
        engine, _, _, _ = deepspeed.initialize(model=pipe, optimizer=opt, config={
            'train_micro_batch_size_per_gpu': 1, 'gradient_accumulation_steps': 1, 'gradient_clipping': 0.0,
            'steps_per_print': 10 ** 9})
        engine.pipeline_enable_backward_allreduce = False
        engine.zero_grad = clip.zero_grad
        train_batch = engine.train_batch

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
        train_batch(it)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    seconds = statistics.median(times[args.warmup:])
    tokens = f * (h // 2) * (w // 2)
    flops = model_flops(cfg, tokens)
    result = {
        'device': torch.cuda.get_device_name() if cuda else 'cpu (smoke)',
        'shape': f'{args.width}x{args.height}x{args.frames}', 'latent_tokens': tokens, 'lora_rank': args.rank,
        'model': 'smoke' if args.smoke else args.model, 'path': 'plain pytorch' if args.plain else 'odeo pipeline',
        'dtype': str(dtype).replace('torch.', ''), 'frozen_storage': 'float8_e4m3fn' if args.float8 else None,
        'activation_checkpointing': args.checkpointing, 'blocks_to_swap': args.blocks_to_swap,
        'memory_cap_gib': args.memory_cap_gib,
        'swapped_gib_in_cpu_memory': round(swapper.swapped_bytes() / 2 ** 30, 2) if swapper else None,
        'peak_resident_swapped_blocks': swapper.peak_resident if swapper else None,
        's_per_step': round(seconds, 3),
        'peak_memory_gib': round(torch.cuda.max_memory_allocated() / 2 ** 30, 2) if cuda else None,
        'model_tflops_per_step': round(flops / 1e12, 1),
        'peak_tflops': round(peak_tflops, 1), 'peak_tflops_measured': bool(cuda and args.measure_peak),
        'mfu': round(flops / seconds / (peak_tflops * 1e12), 3) if cuda else None,
    }
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + '\n')


if __name__ == '__main__':
    main()
