"""The embedded backend (models/wan/inference.py) on the tiny models: the diffusers pipelines built from our
loaders generate from every checkpoint layout, image-to-video and Wan2.2's two experts work with their
LoRAs, and swapping LoRAs between generations leaves nothing of the previous one behind."""

import numpy as np
import pytest
import torch
from PIL import Image

from models.wan.inference import GenerationError, WanGenerator, expert_switch_step, propose_size
from tests.support.inference import make_lora, mean_abs_diff

SMALL = dict(width=64, height=48, frames=5, steps=3, seed=3)


pytestmark = pytest.mark.usefixtures('one_torch_thread')


def model(tiny_models, variant, layout='official'):
    return tiny_models / variant / layout


def test_swapping_loras_leaves_nothing_behind(tiny_models, tmp_path):
    path = model(tiny_models, 'wan2.1-t2v-1.3b')
    a = make_lora(path, tmp_path / 'a' / 'adapter_model.safetensors', seed=1)
    b = make_lora(path, tmp_path / 'b' / 'adapter_model.safetensors', seed=2)
    gen = WanGenerator.load({'ckpt_path': str(path)})
    base = gen.generate('a fox', **SMALL)
    gen.use_lora('a', [(a, 'main')], 1.0)
    with_a = gen.generate('a fox', **SMALL)
    gen.use_lora('b', [(b, 'main')], 1.0)
    with_b = gen.generate('a fox', **SMALL)
    gen.use_lora('b', [(b, 'main')], 0.5)
    half_b = gen.generate('a fox', **SMALL)
    gen.use_lora(None)
    base_again = gen.generate('a fox', **SMALL)
    assert base.shape == (5, 48, 64, 3) and base.dtype == np.uint8
    assert mean_abs_diff(with_a, base) > 5 and mean_abs_diff(with_b, with_a) > 5
    assert 1 < mean_abs_diff(half_b, with_b) and 1 < mean_abs_diff(half_b, base)
    assert np.array_equal(base_again, base)                         # nothing of a or b stayed
    assert not getattr(gen.parts['transformer'], 'peft_config', {})          # no adapter left in the network
    fresh = WanGenerator.load({'ckpt_path': str(path)})
    fresh.use_lora('b', [(b, 'main')], 1.0)
    assert np.array_equal(fresh.generate('a fox', **SMALL), with_b)  # b after a == b alone


def test_every_checkpoint_layout_generates_the_same_video(tiny_models):
    official = WanGenerator.load({'ckpt_path': str(model(tiny_models, 'wan2.1-t2v-1.3b'))}).generate('a fox', **SMALL)
    diffusers = WanGenerator.load({'ckpt_path': str(model(tiny_models, 'wan2.1-t2v-1.3b', 'diffusers'))})
    comfy = model(tiny_models, 'wan2.1-t2v-1.3b', 'comfy')
    from_comfy = WanGenerator.load({'ckpt_path': str(model(tiny_models, 'wan2.1-t2v-1.3b')),
                                    'transformer_path': str(comfy / 'diffusion_models' / 'wan2.1_t2v_1.3B_fp16.safetensors'),
                                    'llm_path': str(comfy / 'text_encoders' / 'umt5_xxl_fp16.safetensors')})
    for other in (diffusers.generate('a fox', **SMALL), from_comfy.generate('a fox', **SMALL)):
        diff = np.abs(other.astype(int) - official.astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3          # the same weights: equal up to rounding


def test_image_to_video_with_a_lora(tiny_models, tmp_path):
    path = model(tiny_models, 'wan2.1-i2v-14b')
    lora = make_lora(path, tmp_path / 'l' / 'adapter_model.safetensors', seed=4)
    gen = WanGenerator.load({'ckpt_path': str(path)})
    first = Image.fromarray(np.tile(np.linspace(0, 255, 64, dtype=np.uint8)[None, :, None], (48, 1, 3)))
    base = gen.generate('a fox', image=first, **SMALL)
    gen.use_lora('l', [(lora, 'main')], 1.0)
    with_lora = gen.generate('a fox', image=first, **SMALL)
    assert with_lora.shape == (5, 48, 64, 3)
    assert mean_abs_diff(with_lora, base) > 5
    other = Image.fromarray(np.full((48, 64, 3), 200, np.uint8))
    assert mean_abs_diff(gen.generate('a fox', image=other, **SMALL), with_lora) > 1   # the image conditions it
    with pytest.raises(GenerationError, match='from an image'):
        gen.generate('a fox', **SMALL)


def test_two_expert_loras_go_into_their_own_experts(tiny_models, tmp_path):
    path = model(tiny_models, 'wan2.2-t2v-a14b')
    high = make_lora(path, tmp_path / 'e1' / 'adapter_model_high_noise.safetensors', seed=5, expert='high_noise')
    low = make_lora(path, tmp_path / 'e1' / 'adapter_model_low_noise.safetensors', seed=6, expert='low_noise')
    gen = WanGenerator.load({'ckpt_path': str(path)})
    kw = dict(SMALL, steps=8, shift=5.0)
    assert 0 < expert_switch_step(8, 5.0, gen.variant.boundary) < 8          # both experts really run
    base = gen.generate('a fox', **kw)
    gen.use_lora('both', [(high, 'high_noise'), (low, 'low_noise')], 1.0)
    t1, t2 = gen.parts['transformer'], gen.parts['transformer_2']
    assert list(t1.peft_config) == list(t2.peft_config) == ['lora1']
    a_high = t1.blocks[0].attn1.to_q.lora_A['lora1'].weight
    a_low = t2.blocks[0].attn1.to_q.lora_A['lora1'].weight
    assert not torch.equal(a_high, a_low)                                    # each expert has its own file
    both = gen.generate('a fox', **kw)
    gen.use_lora('high', [(high, 'high_noise')], 1.0)
    assert 'lora1' not in getattr(t2, 'peft_config', {}) and list(t1.peft_config) == ['lora2']
    high_only = gen.generate('a fox', **kw)
    gen.use_lora(None)
    assert np.array_equal(gen.generate('a fox', **kw), base)
    assert mean_abs_diff(both, base) > 3 and mean_abs_diff(high_only, base) > 1 and mean_abs_diff(both, high_only) > 1


def test_ti2v_5b_with_and_without_a_first_frame(tiny_models):
    gen = WanGenerator.load({'ckpt_path': str(model(tiny_models, 'wan2.2-ti2v-5b'))})
    kw = dict(SMALL, width=64, height=64)
    text = gen.generate('a fox', **kw)
    image = gen.generate('a fox', image=Image.new('RGB', (64, 64), (250, 40, 40)), **kw)
    assert text.shape == image.shape == (5, 64, 64, 3)
    assert mean_abs_diff(text, image) > 1
    with pytest.raises(GenerationError, match='multiple of 32'):
        gen.generate('a fox', **dict(kw, width=48))


def test_sizes_keep_the_aspect_at_the_trained_areas():
    assert propose_size(1920, 1080, 16, '480p') == (848, 480)
    assert propose_size(1080, 1920, 16, '480p') == (480, 848)
    assert propose_size(1920, 1080, 16, '720p') == (1280, 720)
    assert propose_size(1920, 1080, 32, '720p') == (1280, 704)      # Wan2.2 5B's own 720p size
    w, h = propose_size(4032, 3024, 32, '720p')
    assert w % 32 == h % 32 == 0 and abs(w / h - 4 / 3) < 0.03 and abs(w * h - 1280 * 720) / (1280 * 720) < 0.05
    with pytest.raises(GenerationError, match='4n\\+1'):
        from models.wan.inference import check_frames
        check_frames(10)
