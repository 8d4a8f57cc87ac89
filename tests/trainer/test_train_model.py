"""The trained network, in process: what the trainer's pipeline layers compute and feed the network is
what diffusers' Wan pipelines compute and feed it at inference, gradients reach every LoRA weight
with each activation-checkpointing flavour, and what is saved loads back in diffusers."""

import json

import pytest
import torch

from tests.support.trainer import cache_items, config_text, write_config

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
    inputs, _ = adapter.prepare_inputs(adapter.collate(cache_items(adapter, 8)), torch.Generator().manual_seed(3))
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
        x, labels = adapter.prepare_inputs(adapter.collate(cache_items(adapter, 2)), torch.Generator().manual_seed(0))
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


class SwapWatch:
    """Watches a training step through every aten op it runs, forward and backward (a dispatch mode,
    which the autograd engine carries into backward): which swapped blocks are resident (their frozen
    weights are device copies, not the CPU masters) at that moment, and any op that reads a master copy
    (a block computing with weights that are not on the compute device). The swapper's own copies
    (`transferring`) are not computation."""

    def __init__(self, swappers):
        from torch.utils._python_dispatch import TorchDispatchMode
        self.swappers = swappers
        self.frozen = [[[p for p in layer.parameters() if not p.requires_grad] for layer in s.layers] for s in swappers]
        self.masters = {s._cpu[p].untyped_storage().data_ptr(): (k, i)
                        for k, s in enumerate(swappers) for i, ps in enumerate(self.frozen[k]) for p in ps}
        self.peak = [0] * len(swappers)
        self.reads_of_masters = []
        watch = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                watch.look(func, args, kwargs or {})
                return func(*args, **(kwargs or {}))
        self.mode = Mode()

    def resident(self, k):
        s = self.swappers[k]
        return {i for i, ps in enumerate(self.frozen[k]) if any(p.data_ptr() != s._cpu[p].data_ptr() for p in ps)}

    def look(self, func, args, kwargs):
        from torch.utils._pytree import tree_leaves
        if any(getattr(s, 'transferring', False) for s in self.swappers):
            return
        for k, s in enumerate(self.swappers):
            resident = self.resident(k)
            self.peak[k] = max(self.peak[k], len(resident))
            if hasattr(s, 'resident'):
                assert resident == s.resident, (func, resident, s.resident)     # the swapper's ledger is true
        for t in tree_leaves((args, kwargs)):
            if torch.is_tensor(t) and t.device.type == 'cpu' and t.untyped_storage().data_ptr() in self.masters:
                self.reads_of_masters.append((str(func), self.masters[t.untyped_storage().data_ptr()]))


def swap_step(adapter, mode, stages, swap, prefetch):
    """One LoRA training step through the pipeline layers, called as DeepSpeed's pipeline calls them:
    checkpointed blocks through activation_checkpoint_func with the layer's tuple unpacked; with two
    stages, the first stage's last layer sends leaves that ask for grad and each stage runs its own
    backward. `mode` is the config's activation_checkpointing (False: only swapped blocks checkpointed,
    as the trainer does), or 'reentrant'. Returns (LoRA gradients, swappers, watch)."""
    from utils.offload import BlockSwapper
    from utils.pipeline import checkpoint_function
    transformers = adapter.build_diffusion_model(seed=0)
    trained_lora(transformers)
    layers = adapter.to_layers()
    split = len(layers) // 2 if stages == 2 else len(layers)
    stage_layers = [layers[:split], layers[split:]] if stages == 2 else [layers]
    if stages == 2:
        layers[split - 1].sends_to_next_stage = True
    swappers = []
    if swap:
        for local in stage_layers:
            blocks = [m for m in local if type(m).__name__ == 'BlockLayer']
            s = BlockSwapper(blocks, 'cpu')
            s.prefetch, s.record = prefetch, True
            swappers.append(s)
    ckpt = checkpoint_function('unsloth' if mode == 'unsloth' else True, reentrant=mode == 'reentrant')
    watch = SwapWatch(swappers)
    x, labels = adapter.prepare_inputs(adapter.collate(cache_items(adapter, 2)), torch.Generator().manual_seed(0))
    if mode in ('unsloth', 'reentrant'):     # DeepSpeed's engine does this for any checkpoint function but its own
        x = tuple(t.requires_grad_(t.is_floating_point()) for t in x)
    torch.manual_seed(7)
    with watch.mode:
        sent, received = (), ()
        for n, local in enumerate(stage_layers):
            if n == 1:
                sent = x
                x = received = tuple(t.detach().requires_grad_(t.requires_grad) for t in x)
            for layer in local:
                is_block = type(layer).__name__ == 'BlockLayer'
                checkpointed = is_block and (mode is not False or getattr(layer, 'swapped', False))
                x = ckpt(lambda *inputs, layer=layer: layer(inputs), *x) if checkpointed else layer(x)
        adapter.loss(x, labels).backward()
        pairs = [(s, r.grad) for s, r in zip(sent, received) if r.grad is not None]
        if pairs:     # the first stage's backward, from the gradients the second stage sends back
            torch.autograd.backward([s for s, _ in pairs], [g for _, g in pairs])
    grads = {n: p.grad.clone() for n, p in transformers[0].named_parameters() if p.grad is not None}
    return grads, swappers, watch


@pytest.mark.parametrize('stages,prefetch', [(1, True), (1, False), (2, False)])
@pytest.mark.parametrize('mode', [False, True, 'reentrant', 'unsloth'])
def test_block_swap_keeps_only_the_running_block_resident_and_gives_the_same_gradients(tiny_models, tmp_path,
                                                                                      mode, stages, prefetch):
    """Every block of every stage swapped. At every op of the step, forward and backward: no op reads a
    CPU master (each block computes with its device copies, in its checkpoint recompute and backward too,
    RMSNorm's saved weight included), at most one swapped block per stage is resident, plus the
    prefetched one, the swapper's ledger says exactly that, and after the step nothing is resident.
    Gradients equal those of the same step without swapping, bit for bit."""
    reference, _, _ = swap_step(make_adapter(tiny_models, tmp_path, 'wan2.1-t2v-1.3b', adapter=LORA),
                                mode, stages, swap=False, prefetch=prefetch)
    grads, swappers, watch = swap_step(make_adapter(tiny_models, tmp_path, 'wan2.1-t2v-1.3b', adapter=LORA),
                                       mode, stages, swap=True, prefetch=prefetch)
    bound = 2 if prefetch else 1
    assert watch.reads_of_masters == [], watch.reads_of_masters[:5]
    assert all(len(s.layers) > bound for s in swappers)         # the bound means something
    assert max(watch.peak) == bound, watch.peak
    for s in swappers:
        assert max(len(resident) for _, _, resident in s.ledger) == bound
        events = {(event, i) for event, i, _ in s.ledger}
        assert all(('forward', i) in events and ('recompute', i) in events for i in range(len(s.layers)))
        assert s.resident == set() and watch.resident(swappers.index(s)) == set()
    assert grads.keys() == reference.keys() and grads
    for name in grads:
        torch.testing.assert_close(grads[name], reference[name], rtol=0, atol=0, msg=name)


def test_block_swap_leaves_swapped_frozen_weights_in_cpu_memory_when_the_stage_moves(tiny_models, tmp_path):
    """deepspeed.initialize moves the stage with module.to(device). With the swapper built first, the
    swapped blocks' frozen weights stay the CPU masters and never count among the bytes on the device;
    everything else moves, the swapped blocks' LoRA weights included. The `meta` device stands in for a GPU."""
    from utils.offload import BlockSwapper, tensor_bytes
    adapter = make_adapter(tiny_models, tmp_path, 'wan2.1-t2v-1.3b', adapter=LORA)
    adapter.build_diffusion_model(seed=0)
    layers = adapter.to_layers()
    stage = torch.nn.ModuleList(layers)
    total = tensor_bytes(list(stage.parameters()) + list(stage.buffers()))
    swapper = BlockSwapper(layers[1:4], 'meta')
    masters = {p: p.data_ptr() for p in swapper._cpu}
    stage.to('meta')
    assert all(p.device.type == 'cpu' and p.data_ptr() == ptr for p, ptr in masters.items())
    assert all(p.device.type == 'meta' for p in stage.parameters() if p not in swapper._cpu)
    assert any(p.requires_grad for layer in layers[1:4] for p in layer.parameters())
    assert swapper.swapped_bytes() > 0
    assert swapper.device_bytes(stage) == total - swapper.swapped_bytes()


@pytest.mark.skipif(not torch.cuda.is_available(), reason='measures CUDA memory; this machine has no CUDA device')
@pytest.mark.parametrize('mode', [False, True, 'unsloth'])
def test_block_swap_peak_cuda_memory_matches_the_ledger(mode):
    """On a GPU: the bytes on the device after placement are the swapper's device_bytes, and the peak of
    a swapped step is the peak without swapping, less the swapped blocks' frozen weights, plus as many
    blocks as the ledger's peak residency (one block of slack for the allocator's rounding)."""
    from diffusers import WanTransformer3DModel
    from peft import LoraConfig

    from models.wan.adapter import lora_target_modules
    from models.wan.layers import BlockLayer, EmbedLayer, OutputLayer
    from utils.offload import BlockSwapper, tensor_bytes
    from utils.pipeline import checkpoint_function
    cfg = dict(patch_size=(1, 2, 2), num_attention_heads=8, attention_head_dim=64, in_channels=16, out_channels=16,
               text_dim=64, freq_dim=256, ffn_dim=2048, num_layers=8, cross_attn_norm=True)
    peaks = []
    for swap in (False, True):
        torch.manual_seed(0)
        t = WanTransformer3DModel(**cfg).to(torch.bfloat16)
        t.requires_grad_(False)
        t.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=lora_target_modules(t)))
        for name, p in t.named_parameters():
            p.requires_grad_('.lora_' in name)
        layers = [EmbedLayer([t], False, False, torch.bfloat16)] + \
                 [BlockLayer([b], t.config) for b in t.blocks] + [OutputLayer([t])]
        stage = torch.nn.ModuleList(layers)
        swapper = BlockSwapper(layers[1:7], 'cuda') if swap else None
        torch.cuda.empty_cache()
        before = torch.cuda.memory_allocated()
        stage.to('cuda')
        if swap:
            assert torch.cuda.memory_allocated() - before == swapper.device_bytes(stage)
        torch.cuda.reset_peak_memory_stats()
        g = torch.Generator().manual_seed(0)
        x = (torch.randn(1, 16, 3, 16, 16, generator=g).cuda(), torch.tensor([500.0]).cuda(),
             torch.randn(1, 512, 64, generator=g).cuda(), torch.zeros(1, dtype=torch.long).cuda())
        ckpt = checkpoint_function('unsloth' if mode == 'unsloth' else True)
        for layer in layers:
            checkpointed = type(layer).__name__ == 'BlockLayer' and (mode is not False or swap)
            x = ckpt(lambda *inputs, layer=layer: layer(inputs), *x) if checkpointed else layer(x)
        x.float().square().mean().backward()
        torch.cuda.synchronize()
        peaks.append(torch.cuda.max_memory_allocated() - before)
        if swap:
            block = tensor_bytes(swapper._cpu[p] for p in swapper._frozen[0])
            predicted = peaks[0] - swapper.swapped_bytes() + swapper.peak_resident * block
            assert swapper.peak_resident <= 2
            assert peaks[1] <= predicted + block, (peaks, predicted)
        del stage, layers, t, x, swapper


def test_uncond_fraction_trains_on_the_empty_prompt_as_the_pipeline_encodes_it(tiny_models, tmp_path):
    """The empty caption is its tokens then zeros up to 512, like WanPipeline's negative prompt ''."""
    from diffusers import WanPipeline
    adapter = make_adapter(tiny_models, tmp_path, 'wan2.1-t2v-1.3b', uncond_fraction=1.0)
    adapter.load_encoders('cpu')
    adapter.build_diffusion_model(seed=0)
    (empty,) = adapter.encode_text([''])               # what the cache holds for '' ([tokens, D])
    batch = [{**it, 'uncond_text': empty['text_embeddings']} for it in cache_items(adapter, 2)]   # as TrainData attaches it
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
    inputs, labels = adapter.prepare_inputs(adapter.collate(cache_items(adapter, 2)), torch.Generator().manual_seed(0))
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
