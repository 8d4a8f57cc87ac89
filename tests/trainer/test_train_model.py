"""The trained network, in process: what the trainer's pipeline layers compute and feed the network is
what diffusers' Wan pipelines compute and feed it at inference, gradients reach every LoRA weight
with each activation-checkpointing flavour, and what is saved loads back in diffusers."""

import json

import pytest
import torch

from tests.support.trainer import config_text, write_config

LORA = "type = 'lora'\nrank = 4\ndtype = 'float32'"


def make_adapter(tiny_models, tmp_path, variant, layout='official', **overrides):
    from models.wan.adapter import WanAdapter
    from utils.config import load_main_config
    text = config_text(tiny_models / variant / layout, tmp_path / 'dataset.toml', tmp_path / 'out', **overrides)
    return WanAdapter(load_main_config(write_config(tmp_path, text)))


def trained_lora(transformers, seed=0):
    """LoRA B starts at zero (no effect); give it values, as training would."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in transformers:
            for name, p in t.named_parameters():
                if '.lora_B.' in name:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.1)


def items(adapter, count, text_len=5, seed=1):
    """Cache entries as the trainer reads them: latents [z, F', H', W'], text [tokens, D], i2v condition, CLIP."""
    g = torch.Generator().manual_seed(seed)
    t = adapter.transformers[0].config
    out = []
    for i in range(count):
        it = {'latents': torch.randn(adapter.variant.z_dim, 3, 8, 8, generator=g),
              'text_embeddings': torch.randn(text_len + i, t.text_dim, generator=g)}
        if adapter.uses_cond:
            it['y'] = torch.randn(adapter.variant.z_dim, 3, 8, 8, generator=g)
        if adapter.uses_clip:
            it['clip_context'] = torch.randn(257, t.image_dim, generator=g)
        out.append(it)
    return out


def run_layers(layers, inputs):
    x = inputs
    for layer in layers:
        x = layer(x)
    return x


@pytest.mark.parametrize('variant', ['wan2.1-t2v-1.3b', 'wan2.1-i2v-14b', 'wan2.2-i2v-a14b', 'wan2.2-ti2v-5b',
                                     'wan2.2-t2v-a14b'])
def test_pipeline_layers_compute_what_the_diffusers_transformer_computes(tiny_models, tmp_path, variant):
    """bf16 weights, LoRA active; two experts: each sample goes where WanPipeline's boundary_ratio sends it."""
    adapter = make_adapter(tiny_models, tmp_path, variant, model_dtype='bfloat16', adapter=LORA)
    transformers = adapter.build_diffusion_model(seed=0)
    trained_lora(transformers)
    two = len(transformers) == 2
    if two:
        adapter.t_table = torch.tensor([0.3, 0.95], dtype=torch.float64)   # one draw each side of the boundary
    inputs, _ = adapter.prepare_inputs(adapter.collate(items(adapter, 8)), torch.Generator().manual_seed(3))
    with torch.no_grad():
        got = run_layers(adapter.to_layers(), inputs)

    x_t, timestep, text, *extra, expert = inputs
    index = json.loads((tiny_models / variant / 'diffusers' / 'model_index.json').read_text())
    if two:       # WanPipeline: `transformer` (high noise) at t >= boundary_ratio * 1000, `transformer_2` below
        assert torch.equal(expert, (timestep < index['boundary_ratio'] * 1000).long()) and 0 < expert.sum() < 8
    hidden = torch.cat([x_t, extra[0]], dim=1) if adapter.uses_cond else x_t
    if index.get('expand_timesteps'):      # Wan2.2 TI2V: one timestep per token (all t for text-to-video)
        tokens = hidden.shape[2] * (hidden.shape[3] // 2) * (hidden.shape[4] // 2)
        timestep = timestep[:, None].expand(-1, tokens)
    expected = torch.empty_like(got)
    with torch.no_grad():
        for e, transformer in enumerate(transformers):
            sel = expert == e
            image = extra[-1][sel].to(torch.bfloat16) if adapter.uses_clip else None
            expected[sel] = transformer(hidden[sel].to(torch.bfloat16), timestep[sel], text[sel].to(torch.bfloat16),
                                        encoder_hidden_states_image=image, return_dict=False)[0]
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


@pytest.mark.parametrize('variant', ['wan2.1-i2v-14b', 'wan2.2-i2v-a14b'])
def test_i2v_condition_is_what_the_diffusers_pipeline_feeds(tiny_models, tmp_path, variant):
    """Mask channels + latent of (first frame, black frames), as WanImageToVideoPipeline.prepare_latents makes them."""
    from diffusers import WanImageToVideoPipeline
    adapter = make_adapter(tiny_models, tmp_path, variant)
    adapter.load_encoders('cpu')
    frames, height, width = 9, 32, 48
    pixels = torch.rand(1, 3, frames, height, width, generator=torch.Generator().manual_seed(0)) * 2 - 1
    encoded = adapter.encode_media(pixels)
    ours = torch.cat([adapter.condition_mask(1, encoded['latents'].shape[2], height // 8, width // 8), encoded['y']], 1)
    pipe = WanImageToVideoPipeline.from_pretrained(tiny_models / variant / 'diffusers', dtype=torch.float32)
    _, theirs = pipe.prepare_latents(pixels[:, :, 0], 1, adapter.variant.z_dim, height, width, frames, torch.float32, 'cpu',
                                     torch.Generator().manual_seed(0))
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('mode', ['unsloth', 'reentrant'])
def test_checkpointing_flavours_give_the_gradients_of_no_checkpointing(tiny_models, tmp_path, mode):
    """Called as DeepSpeed's pipeline calls activation_checkpoint_func: the layer's tuple unpacked, and the
    first stage's floating-point inputs asking for grad (its engine does that for any checkpoint function
    but its own non-reentrant one). LoRA dropout draws random masks, which the recompute must draw again."""
    from utils.pipeline import checkpoint_function
    grads = []
    for ckpt in (None, checkpoint_function('unsloth' if mode == 'unsloth' else True, reentrant=mode == 'reentrant')):
        adapter = make_adapter(tiny_models, tmp_path, 'wan2.1-t2v-1.3b', adapter=LORA + '\ndropout = 0.2')
        transformers = adapter.build_diffusion_model(seed=0)
        trained_lora(transformers)
        x, labels = adapter.prepare_inputs(adapter.collate(items(adapter, 2)), torch.Generator().manual_seed(0))
        if ckpt is not None:
            x = tuple(t.requires_grad_(t.is_floating_point()) for t in x)
        torch.manual_seed(7)
        for layer in adapter.to_layers():
            checkpointed = ckpt is not None and type(layer).__name__ in adapter.checkpointable_layers
            x = ckpt(lambda *inputs, layer=layer: layer(inputs), *x) if checkpointed else layer(x)
        adapter.loss(x, labels).backward()
        grads.append({n: p.grad for n, p in transformers[0].named_parameters() if p.requires_grad})
    assert all(g is not None for g in grads[1].values()), [n for n, g in grads[1].items() if g is None][:3]
    for name, g in grads[0].items():
        torch.testing.assert_close(grads[1][name], g, rtol=0, atol=0, msg=name)


def test_block_swap_gives_the_same_gradients_and_frees_swapped_weights(tiny_models, tmp_path):
    """Swapped blocks run with their weights brought in and sent back around each call; the math is unchanged."""
    from utils.offload import BlockSwapper
    from utils.pipeline import checkpoint_function
    grads = []
    for swap in (False, True):
        adapter = make_adapter(tiny_models, tmp_path, 'wan2.1-t2v-1.3b')
        adapter.build_diffusion_model(seed=0)
        layers = adapter.to_layers()
        if swap:
            swapper = BlockSwapper(layers[1:3], 'cpu')
        x, labels = adapter.prepare_inputs(adapter.collate(items(adapter, 1)), torch.Generator().manual_seed(0))
        ckpt = checkpoint_function(True)
        for layer in layers:
            x = ckpt(layer, x) if type(layer).__name__ == 'BlockLayer' else layer(x)
        adapter.loss(x, labels).backward()
        if swap:     # after the step the swapped blocks' frozen weights are the CPU copies again
            assert all(p.data_ptr() == swapper._cpu[p].data_ptr() for layer in layers[1:3] for p in layer.parameters() if not p.requires_grad)
        grads.append({n: p.grad.clone() for n, p in adapter.transformers[0].named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=0, atol=0)


def test_uncond_fraction_trains_on_the_empty_prompt_as_the_pipeline_encodes_it(tiny_models, tmp_path):
    """The empty caption is its tokens then zeros up to 512, like WanPipeline's negative prompt ''."""
    from diffusers import WanPipeline
    adapter = make_adapter(tiny_models, tmp_path, 'wan2.1-t2v-1.3b', uncond_fraction=1.0)
    adapter.load_encoders('cpu')
    adapter.build_diffusion_model(seed=0)
    (empty,) = adapter.encode_text([''])               # what the cache holds for '' ([tokens, D])
    batch = [{**it, 'uncond_text': empty['text_embeddings']} for it in items(adapter, 2)]   # as TrainData attaches it
    inputs, _ = adapter.prepare_inputs(adapter.collate(batch), torch.Generator().manual_seed(0))
    pipe = WanPipeline.from_pretrained(tiny_models / 'wan2.1-t2v-1.3b' / 'diffusers', dtype=torch.float32)
    with torch.no_grad():
        _, negative = pipe.encode_prompt('x', negative_prompt='', do_classifier_free_guidance=True, max_sequence_length=512)
    torch.testing.assert_close(inputs[2], negative.expand(2, -1, -1), rtol=1e-6, atol=1e-6)


def test_lora_with_alpha_other_than_rank_loads_in_diffusers_with_the_same_output(tiny_models, tmp_path):
    from diffusers import WanImageToVideoPipeline
    adapter = make_adapter(tiny_models, tmp_path, 'wan2.1-i2v-14b', adapter=LORA + '\nalpha = 8')
    (ours,) = adapter.build_diffusion_model(seed=0)
    trained_lora([ours])
    adapter.save_adapter(tmp_path / 'lora', adapter.trainable_state_dict())
    pipe = WanImageToVideoPipeline.from_pretrained(tiny_models / 'wan2.1-i2v-14b' / 'diffusers', dtype=torch.float32)
    pipe.load_lora_weights(str(tmp_path / 'lora'), weight_name='adapter_model.safetensors', adapter_name='trained')
    g = torch.Generator().manual_seed(0)
    args = (torch.randn(1, 36, 3, 8, 8, generator=g), torch.tensor([700.0]), torch.randn(1, 512, 32, generator=g))
    image = torch.randn(1, 257, ours.config.image_dim, generator=g)
    with torch.no_grad():
        expected = ours(*args, encoder_hidden_states_image=image, return_dict=False)[0]
        got = pipe.transformer(*args, encoder_hidden_states_image=image, return_dict=False)[0]
        pipe.set_adapters(['trained'], [0.0])
        base = pipe.transformer(*args, encoder_hidden_states_image=image, return_dict=False)[0]
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert (got - base).abs().max() > 0.1


@pytest.mark.parametrize('variant', ['wan2.1-t2v-1.3b', 'wan2.2-t2v-a14b'])
def test_full_fine_tune_of_a_diffusers_folder_saves_loadable_transformers(tiny_models, tmp_path, variant):
    """Official names need the official config.json, whatever layout the run trained from; two experts
    save one folder each, named as in the official A14B folder, loadable as transformer_path."""
    from models.wan import checkpoints, weights
    src = tiny_models / variant / 'diffusers'
    adapter = make_adapter(tiny_models, tmp_path, variant, 'diffusers', adapter=None,
                           optimizer="type = 'adamw'\nlr = 1e-3")
    transformers = adapter.build_diffusion_model()
    with torch.no_grad():
        for t in transformers:
            t.blocks[0].attn1.to_q.weight.add_(1.0)            # "trained"
    written = adapter.save_full(tmp_path / 'saved', adapter.trainable_state_dict())
    assert written == ({'main': '.'} if len(transformers) == 1 else
                       {'high_noise': 'high_noise_model', 'low_noise': 'low_noise_model'})
    for (expert, folder), transformer in zip(written.items(), transformers):
        path = tmp_path / 'saved' / folder
        ckpt = checkpoints.inspect_checkpoint({'ckpt_path': str(src), 'transformer_path': str(path)})
        loaded = weights.load_transformer(ckpt, expert, torch.float32).state_dict()
        for name, value in transformer.state_dict().items():
            assert torch.equal(loaded[name], value), (expert, name)


def test_float8_storage_narrows_only_the_linear_weights_inside_the_blocks(tiny_models, tmp_path):
    """transformer_dtype = 'float8': the blocks' linear weights are stored in float8; biases, norms, the
    embeddings, the head and the modulation tables keep the compute dtype, with the values the file holds;
    LoRA weights are in the adapter's dtype. The network still runs and trains in bf16."""
    from models.wan import weights
    adapter = make_adapter(tiny_models, tmp_path, 'wan2.2-i2v-a14b', model_dtype='bfloat16', adapter=LORA,
                           model_extra="transformer_dtype = 'float8'")
    transformers = adapter.build_diffusion_model(seed=0)
    reference = weights.load_transformer(adapter.ckpt, 'high_noise', torch.bfloat16).state_dict()
    narrowed = 0
    for name, p in transformers[0].named_parameters():
        base = name.replace('.base_layer.', '.')
        if '.lora_' in name:
            assert p.dtype == torch.float32 and p.requires_grad, name
            continue
        linear_weight = name.startswith('blocks.') and name.endswith('.weight') and 'norm' not in name
        assert p.dtype == (torch.float8_e4m3fn if linear_weight else torch.bfloat16), name
        if linear_weight:
            narrowed += 1
        else:
            assert torch.equal(p, reference[base]), name
    assert narrowed == 10 * len(transformers[0].blocks)     # per block: q, k, v, out of both attentions; feed-forward in, out
    for keep in ('blocks.0.attn1.to_q.base_layer.bias', 'blocks.0.norm2.weight', 'blocks.0.scale_shift_table',
                 'proj_out.weight', 'patch_embedding.weight', 'condition_embedder.time_proj.weight'):
        assert dict(transformers[0].named_parameters())[keep].dtype == torch.bfloat16, keep
    inputs, labels = adapter.prepare_inputs(adapter.collate(items(adapter, 2)), torch.Generator().manual_seed(0))
    adapter.loss(run_layers(adapter.to_layers(), inputs), labels).backward()
    assert all(p.grad is not None for t in transformers for n, p in t.named_parameters() if '.lora_B.' in n
               and (inputs[-1] == (0 if t is transformers[0] else 1)).any())


def test_text_encoder_fp8_keeps_the_embeddings_and_norms_in_the_compute_dtype(tiny_models, tmp_path):
    """text_encoder_fp8: the attention and feed-forward input weights are stored in float8; the token
    embedding, every relative_attention_bias, the norms and wo keep bf16. Captions encode as a bf16 encoder
    whose narrowed weights were rounded through float8 encodes them."""
    def narrowed(name):
        return name.startswith('encoder.block.') and name.split('.')[-2] in ('q', 'k', 'v', 'o', 'wi_0', 'wi_1')

    caption = ['a red fox jumps over the lazy dog']
    reference = make_adapter(tiny_models, tmp_path, 'wan2.1-t2v-1.3b', model_dtype='bfloat16')
    reference.load_encoders('cpu')
    with torch.no_grad():
        for name, p in reference.text_encoder.named_parameters():
            if narrowed(name):
                p.copy_(p.to(torch.float8_e4m3fn).to(torch.bfloat16))
    adapter = make_adapter(tiny_models, tmp_path, 'wan2.1-t2v-1.3b', model_dtype='bfloat16',
                           model_extra='text_encoder_fp8 = true')
    adapter.load_encoders('cpu')
    params = dict(adapter.text_encoder.named_parameters(remove_duplicate=False))
    for name, p in params.items():
        assert p.dtype == (torch.float8_e4m3fn if narrowed(name) else torch.bfloat16), name
    assert params['encoder.embed_tokens.weight'].dtype == torch.bfloat16
    assert params['encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight'].dtype == torch.bfloat16
    got = adapter.encode_text(caption)[0]['text_embeddings']
    torch.testing.assert_close(got, reference.encode_text(caption)[0]['text_embeddings'], rtol=0, atol=0)


def test_lora_init_is_not_quantized_by_a_float8_base(tiny_models, tmp_path):
    """LoRA A starts from the same float32 values whatever dtype the frozen base is stored in."""
    lora_a = []
    for extra in ('', "transformer_dtype = 'float8'"):
        adapter = make_adapter(tiny_models, tmp_path, 'wan2.1-t2v-1.3b', model_dtype='bfloat16', adapter=LORA,
                               model_extra=extra)
        (transformer,) = adapter.build_diffusion_model(seed=0)
        lora_a.append({n: p for n, p in transformer.named_parameters() if '.lora_A.' in n})
    assert lora_a[0].keys() == lora_a[1].keys() and lora_a[0]
    for name, a in lora_a[1].items():
        assert a.dtype == torch.float32 and torch.equal(a, lora_a[0][name]), name
        assert not torch.equal(a, a.to(torch.float8_e4m3fn).float()), name       # not float8 values
        assert not torch.equal(a, a.to(torch.bfloat16).float()), name            # nor bf16 ones
