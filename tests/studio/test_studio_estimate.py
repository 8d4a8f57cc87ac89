"""The estimate of GPU memory and time per epoch shown before a run starts: the documented formula of
api/services/training/estimate.py checked on cases computed by hand (docs/performance.md has no measured GPU
figure to calibrate it against yet; when one is measured, add it here as a case)."""

import pytest

from api.services.training.estimate import CALIBRATION, GIB, block_params, estimate, lora_params, tokens
from models.wan.variants import VARIANTS


def test_parameters_and_tokens_by_hand():
    assert block_params(1536, 8960) * 30 == (8 * 1536 ** 2 + 2 * 1536 * 8960) * 30 == 1_391_984_640   # ~1.39 B
    assert block_params(5120, 13824) * 40 == 14_050_918_400          # Wan2.1 14B: ~14.05 B
    assert lora_params(1536, 8960, 30, 32) == 30 * 32 * (16 * 1536 + 2 * (1536 + 8960))   # 43.7 M at rank 32
    # 832x480, 81 frames: 21 latent frames x (480/16) x (832/16) patches
    assert tokens(VARIANTS['wan2.1-t2v-14b'], 832, 480, 81) == 21 * 30 * 52 == 32760
    assert tokens(VARIANTS['wan2.2-ti2v-5b'], 1280, 704, 121) == 31 * 22 * 40          # VAE stride 16, 2x2 patches


def test_memory_of_the_14b_model_by_hand():
    e = estimate({'variant': 'wan2.1-t2v-14b', 'width': 832, 'height': 480, 'frames': 81, 'lora_rank': 32,
                  'activation_checkpointing': True}, gpu_name='NVIDIA H100 80GB HBM3')
    n, d, ffn, L = 32760, 5120, 13824, 40
    weights = 14_050_918_400 * 2 + 2 * (16 * 4 * d + 4096 * d + 8 * d * d + 256 * d + d * 16 * 4)
    a_layer = (CALIBRATION['ACT_D'] * d + CALIBRATION['ACT_F'] * ffn) * 2
    acts = n * L * d * 2 + n * a_layer
    lora = 40 * 32 * (16 * d + 2 * (d + ffn)) * 16
    total = (weights + acts + lora) * 1.1 + 1.5 * GIB
    assert e['memory_gib']['weights'] == round(weights / GIB, 2) == 26.61
    assert e['memory_gib']['activations'] == round(acts / GIB, 2)
    assert e['memory_gib']['lora_optimizer'] == round(lora / GIB, 2)
    assert e['memory_gib']['total'] == pytest.approx(total / GIB, abs=0.01)
    assert e['gpu'] == 'H100' and 'estimate' in e['note'] and e['calibrated'] is False

    off = estimate({'variant': 'wan2.1-t2v-14b', 'width': 832, 'height': 480, 'frames': 81, 'lora_rank': 32,
                    'activation_checkpointing': False})
    assert off['memory_gib']['activations'] == round(n * L * a_layer / GIB, 2) > 10 * e['memory_gib']['activations']
    swapped = estimate({'variant': 'wan2.1-t2v-14b', 'blocks_to_swap': 20})
    assert swapped['memory_gib']['weights'] == pytest.approx(e['memory_gib']['weights'] * 21 / 40, abs=0.2)
    fp8 = estimate({'variant': 'wan2.1-t2v-14b', 'transformer_dtype': 'float8'})
    assert fp8['memory_gib']['weights'] == pytest.approx(e['memory_gib']['weights'] - 14_050_918_400 / GIB, abs=0.01)


def test_time_per_epoch_by_hand():
    e = estimate({'variant': 'wan2.1-t2v-1.3b', 'width': 832, 'height': 480, 'frames': 81, 'items_per_epoch': 100,
                  'activation_checkpointing': True, 'gpus': 2}, gpu_name='NVIDIA H100')
    n, d, L = 32760, 1536, 30
    fwd = 2 * 1_391_984_640 * n + 4 * n * n * d * L + 4 * n * 512 * d * L
    step = 3 * fwd / (989e12 * CALIBRATION['MFU'])
    assert e['micro_step_s'] == round(step, 2) and e['micro_steps_per_epoch'] == 50
    assert e['epoch_s'] == round(step * 50)
    assert estimate({'variant': 'wan2.1-t2v-1.3b'}, gpu_name=None)['epoch_s'] is None      # no GPU: memory only


def test_bad_requests_name_the_field():
    from api.services.errors import BadRequest
    for body, field in (({'variant': 'sd15'}, 'variant'), ({'blocks_to_swap': 30}, 'blocks_to_swap'),
                        ({'lora_rank': 0}, 'lora_rank'), ({'transformer_dtype': 'int4'}, 'transformer_dtype')):
        with pytest.raises(BadRequest) as e:
            estimate(body)
        assert e.value.field == field
