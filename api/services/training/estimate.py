"""An estimate of GPU memory and time per epoch of a LoRA run, before it starts: a formula, not a measurement.

    e = estimate({'variant': 'wan2.1-t2v-14b', 'width': 832, 'height': 480, 'frames': 81, 'lora_rank': 32,
                  'blocks_to_swap': 0, 'activation_checkpointing': True, 'items_per_epoch': 100}, gpu_name='NVIDIA H100')
    e['memory_gib']['total'], e['epoch_s']

Memory on one GPU (one pipeline stage holding every block; bytes):

    weights      = P_block * L_resident * b_dtype + P_other * 2          L_resident = L - blocks_to_swap (+1 in flight)
    activations  = n_tok * L * d * 2 + n_tok * A_layer                   with activation checkpointing
                 = n_tok * L * A_layer                                   without
                   A_layer = (ACT_D * d + ACT_F * ffn) * 2 bytes, what one block keeps per token for its backward
    lora + optim = P_lora * LORA_BYTES                                  weights, gradients, two AdamW moments (fp32)
    overhead     = OVERHEAD_GIB + OVERHEAD_FRACTION * (the sum above)   CUDA context, allocator slack
    n_tok        = micro_batch * ((frames - 1) // 4 + 1) * (height / (s_h * 2)) * (width / (s_w * 2))
                   (the VAE's stride s, then 2x2 patches; attention through SDPA keeps no n_tok^2 matrix)

Time: FLOPs of one micro-batch forward = 2 * P_block * L * n_tok + 4 * n_tok^2 * d * L (self-attention) +
4 * n_tok * TEXT_TOKENS * d * L (cross-attention); a LoRA step on a frozen model costs 2 forwards (no weight
gradients), 3 with checkpointing (recomputed forward). Seconds = FLOPs / (peak * MFU), or the block-swap
transfer time (2 * swapped bytes / PCIE_BYTES_S, overlapped with compute) when that is longer. An epoch is
items_per_epoch / (micro_batch * data-parallel GPUs) micro-batches.

Calibration: the constants in CALIBRATION are assumptions. docs/performance.md has no GPU figure yet; when
`bench/gpu_step.py` measures one (peak memory, s/step on a named GPU), set ACT_D / MFU so estimate() gives
the measured figure for that case, and the test in tests/studio/test_studio_estimate.py pins it.
"""

from models.wan.variants import VARIANTS

from ..errors import BadRequest

GIB = 1024 ** 3
# the transformer of each family: hidden size d, feed-forward size, blocks L (Wan's published configs)
ARCH = {
    'wan2.1-1.3b': dict(dim=1536, ffn=8960, layers=30),
    'wan2.1-14b': dict(dim=5120, ffn=13824, layers=40),
    'wan2.2-5b': dict(dim=3072, ffn=14336, layers=30),
}
ARCH_OF = {'wan2.1-t2v-1.3b': 'wan2.1-1.3b', 'wan2.1-t2v-14b': 'wan2.1-14b', 'wan2.1-i2v-14b': 'wan2.1-14b',
           'wan2.2-t2v-a14b': 'wan2.1-14b', 'wan2.2-i2v-a14b': 'wan2.1-14b', 'wan2.2-ti2v-5b': 'wan2.2-5b'}
DTYPE_BYTES = {'bfloat16': 2, 'float16': 2, 'float32': 4, 'float8': 1, 'float8_e4m3fn': 1, 'float8_e5m2': 1}
PEAK_TFLOPS = {'H200': 989, 'H100': 989, 'A100': 312, 'L40S': 362, 'L40': 181, 'A6000': 155, '4090': 165,
               '3090': 71, 'A10': 125}          # dense bf16 tensor-core peaks
TEXT_TOKENS = 512
CALIBRATION = {
    'ACT_D': 16,              # values of size d one block keeps per token (norms, q/k/v, rope, attention out, residuals)
    'ACT_F': 2,               # values of size ffn (the feed-forward's input to GELU and its output)
    'LORA_BYTES': 16,         # per LoRA parameter: fp32 weight, fp32 gradient, two fp32 AdamW moments
    'OVERHEAD_GIB': 1.5,      # CUDA context, cuBLAS workspace
    'OVERHEAD_FRACTION': 0.1,  # allocator fragmentation
    'MFU': 0.35,              # share of the GPU's peak a LoRA step reaches
    'PCIE_BYTES_S': 20e9,     # host <-> GPU copies of swapped blocks
}


def block_params(dim, ffn, i2v_clip=False):
    """Parameters of one Wan block: self- and cross-attention (4 d x d each, 2 more for CLIP image k/v), the
    feed-forward (d x ffn twice); biases, norms and modulation are under 0.1 % and left out."""
    return (8 + (2 if i2v_clip else 0)) * dim * dim + 2 * dim * ffn


def lora_params(dim, ffn, layers, rank, i2v_clip=False):
    """LoRA on every linear of every block: r * (in + out) each."""
    per_block = rank * ((8 + (2 if i2v_clip else 0)) * 2 * dim + 2 * (dim + ffn))
    return per_block * layers


def tokens(variant, width, height, frames, micro_batch=1):
    st, sh, sw = variant.vae_stride
    return micro_batch * ((frames - 1) // st + 1) * (height // (sh * 2)) * (width // (sw * 2))


def peak_tflops(gpu_name):
    for key, tf in PEAK_TFLOPS.items():
        if gpu_name and key in gpu_name.upper():
            return tf, key
    return None, None


def _int(body, name, default, lo=0):
    v = body.get(name, default)
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise BadRequest(f'{name} must be a whole number of at least {lo}', field=name)
    return v


def estimate(body, gpu_name=None, calibration=None):
    c = {**CALIBRATION, **(calibration or {})}
    vid = body.get('variant') or 'wan2.1-t2v-1.3b'
    if vid not in VARIANTS:
        raise BadRequest(f'variant {vid!r} is unknown; one of {", ".join(VARIANTS)}', field='variant')
    variant = VARIANTS[vid]
    a = ARCH[ARCH_OF[vid]]
    d, ffn, L = a['dim'], a['ffn'], a['layers']
    width, height = _int(body, 'width', 832, 16), _int(body, 'height', 480, 16)
    frames, mb = _int(body, 'frames', 81, 1), _int(body, 'micro_batch_size', 1, 1)
    rank, swap = _int(body, 'lora_rank', 32, 1), _int(body, 'blocks_to_swap', 0)
    gpus, items = _int(body, 'gpus', 1, 1), _int(body, 'items_per_epoch', 0)
    if swap >= L:
        raise BadRequest(f'blocks_to_swap must be below the {L} blocks of {vid}', field='blocks_to_swap')
    ckpt = body.get('activation_checkpointing', True) not in (False, 'false')
    dtype = body.get('transformer_dtype') or 'bfloat16'
    if dtype not in DTYPE_BYTES:
        raise BadRequest(f'transformer_dtype {dtype!r}: one of {", ".join(DTYPE_BYTES)}', field='transformer_dtype')
    experts = 2 if variant.two_experts and body.get('expert') == 'both' else 1

    pb = block_params(d, ffn, variant.uses_clip)
    n = tokens(variant, width, height, frames, mb)
    resident = L - swap + (1 if swap else 0)
    weights = experts * (pb * resident * DTYPE_BYTES[dtype] + 2 * _other_params(variant, d))
    a_layer = (c['ACT_D'] * d + c['ACT_F'] * ffn) * 2
    activations = n * L * d * 2 + n * a_layer if ckpt else n * L * a_layer
    lora = experts * lora_params(d, ffn, L, rank, variant.uses_clip) * c['LORA_BYTES']
    subtotal = weights + activations + lora
    overhead = c['OVERHEAD_GIB'] * GIB + c['OVERHEAD_FRACTION'] * subtotal
    total = subtotal + overhead

    fwd = 2 * pb * L * n + 4 * n * n * d * L / mb + 4 * n * TEXT_TOKENS * d * L
    step_flops = fwd * (3 if ckpt else 2)
    tf, gpu_key = peak_tflops(gpu_name)
    compute_s = step_flops / (tf * 1e12 * c['MFU']) if tf else None
    swap_s = 2 * swap * pb * DTYPE_BYTES[dtype] / c['PCIE_BYTES_S']
    step_s = max(compute_s, swap_s) if compute_s is not None else None
    micro_steps = -(-items // (mb * gpus)) if items else None
    return {
        'variant': vid, 'variants': list(ARCH_OF), 'tokens': n, 'gpu': gpu_key,
        'memory_gib': {k: round(v / GIB, 2) for k, v in (('weights', weights), ('activations', activations),
                                                        ('lora_optimizer', lora), ('overhead', overhead),
                                                        ('total', total))},
        'step_tflop': round(step_flops / 1e12, 1),
        'micro_step_s': None if step_s is None else round(step_s, 2),
        'epoch_s': None if step_s is None or micro_steps is None else round(step_s * micro_steps),
        'micro_steps_per_epoch': micro_steps,
        'calibrated': False,
        'note': 'estimate from a formula (docs/performance.md); no measured GPU figure calibrates it yet',
    }


def _other_params(variant, dim):
    """Patch, text and time embeddings and the head: small next to the blocks, kept in bf16, never swapped."""
    in_dim = 36 if variant.i2v_condition else variant.z_dim
    return in_dim * 4 * dim + 4096 * dim + dim * dim + 256 * dim + 7 * dim * dim + dim * variant.z_dim * 4
