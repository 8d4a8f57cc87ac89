"""Wan2.2 A14B trains both experts in one run: each expert's expected share of the samples, balanced
expert sampling, and an expert that got no sample in a step taking no optimizer step (weights, moments
and step counters untouched), decided alike on every data-parallel rank."""

import math
import os

import pytest
import torch

from tests.support.trainer import config_text, write_config
from utils import timesteps

LORA = "type = 'lora'\nrank = 4\ndtype = 'float32'"


def make_adapter(tiny_models, tmp_path, variant, **overrides):
    from models.wan.adapter import WanAdapter
    from utils.config import load_main_config
    text = config_text(tiny_models / variant / 'official', tmp_path / 'dataset.toml', tmp_path / 'out', **overrides)
    return WanAdapter(load_main_config(write_config(tmp_path, text)))


def logit_normal_tail(boundary):
    """P(sigmoid(z) >= boundary), z ~ N(0, 1), in closed form."""
    return 0.5 * math.erfc(math.log(boundary / (1 - boundary)) / math.sqrt(2))


@pytest.mark.parametrize('variant, boundary, percent', [('wan2.2-t2v-a14b', 0.875, 2.6), ('wan2.2-i2v-a14b', 0.9, 1.4)])
def test_high_noise_expert_share_with_the_default_timesteps(tiny_models, tmp_path, variant, boundary, percent):
    """Logit-normal, no shift: the share is the fraction of the sampler's 10,000 quantiles at or above the
    boundary (exact for the sampler), which is the distribution's tail to within the grid."""
    adapter = make_adapter(tiny_models, tmp_path, variant)
    assert adapter.boundary == boundary
    shares = adapter.expert_shares()
    assert shares['high_noise'] == timesteps.high_noise_share(timesteps.timestep_table({}), boundary)
    assert shares['high_noise'] == pytest.approx(logit_normal_tail(boundary), abs=2e-4)
    assert round(100 * shares['high_noise'], 1) == percent
    assert shares['high_noise'] + shares['low_noise'] == pytest.approx(1.0)
    shifted = make_adapter(tiny_models, tmp_path, variant, model_extra='shift = 5.0').expert_shares()
    assert shifted['high_noise'] > 0.2                    # a shift moves samples toward noise


def test_timestep_draws_reach_the_high_noise_expert_at_the_expected_rate(tiny_models, tmp_path):
    adapter = make_adapter(tiny_models, tmp_path, 'wan2.2-t2v-a14b')
    t = timesteps.sample(adapter.t_table, 200_000, torch.Generator().manual_seed(0))
    assert (t >= adapter.boundary).double().mean().item() == pytest.approx(adapter.expert_shares()['high_noise'], abs=1.5e-3)


def test_balanced_sampling_picks_the_expert_uniformly_then_t_inside_its_range(tiny_models, tmp_path):
    adapter = make_adapter(tiny_models, tmp_path, 'wan2.2-i2v-a14b', model_extra="expert_sampling = 'balanced'")
    assert adapter.expert_shares() == {'high_noise': 0.5, 'low_noise': 0.5}
    latents = torch.zeros(4000, adapter.variant.z_dim, 1, 2, 2)
    batch = {'latents': latents, 'text': torch.zeros(4000, 1, 4), 'y': torch.zeros_like(latents)}
    inputs, _ = adapter.prepare_inputs(batch, torch.Generator().manual_seed(0))
    t, expert = inputs[1] / 1000, adapter.sample_experts(inputs)
    assert (expert == 0).double().mean().item() == pytest.approx(0.5, abs=0.03)
    assert torch.equal(expert, (t < adapter.boundary).long())
    high = t[expert == 0]
    # inside its range t follows the configured distribution: the logit-normal tail above 0.9
    tail = adapter.t_table[adapter.t_table >= 0.9].float()
    assert high.min() >= 0.9 and high.median().item() == pytest.approx(tail.median().item(), abs=0.01)
    evaluation, _ = adapter.prepare_inputs(batch, torch.Generator().manual_seed(0), timestep_quantile=0.5)
    assert torch.all(evaluation[1] == evaluation[1][0])   # evaluation quantiles are not rebalanced


def test_an_expert_without_samples_takes_no_optimizer_step(tiny_models, tmp_path):
    """Tiny Wan2.2 T2V, both experts, AdamW with weight decay. Step 1 trains both; in step 2 only the
    low-noise expert gets samples and the high-noise one's gradients are zeros, as DeepSpeed's data-parallel
    all-reduce leaves them: its weights and optimizer state (moments, step) must not change."""
    from utils.pipeline import ClippedStep
    adapter = make_adapter(tiny_models, tmp_path, 'wan2.2-t2v-a14b', adapter=LORA)
    transformers = adapter.build_diffusion_model(seed=0)
    layers = adapter.to_layers()
    params = [p for t in transformers for p in t.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.1)
    clipper = ClippedStep(optimizer, params, 1.0)
    clipper.track_experts(adapter.expert_parameters(), 'cpu')
    g = torch.Generator().manual_seed(0)
    item = {'latents': torch.randn(16, 3, 8, 8, generator=g), 'text_embeddings': torch.randn(5, 32, generator=g)}

    def step(table):
        adapter.t_table = torch.tensor(table, dtype=torch.float64)
        inputs, labels = adapter.prepare_inputs(adapter.collate([item] * 6), torch.Generator().manual_seed(1))
        clipper.count_samples(adapter.sample_experts(inputs))
        x = inputs
        for layer in layers:
            x = layer(x)
        adapter.loss(x, labels).backward()
        for p in adapter.expert_parameters()[0]:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        optimizer.step()
        clipper.zero_grad()

    high = adapter.expert_parameters()[0]
    step([0.3, 0.95])                                  # both experts
    assert clipper.idle_experts == [] and all(optimizer.state[p] for p in params)
    before = [p.detach().clone() for p in high]
    state = [{k: v.clone() for k, v in optimizer.state[p].items()} for p in high]
    low_before = [p.detach().clone() for p in adapter.expert_parameters()[1]]
    step([0.3])                                        # low noise only
    assert clipper.idle_experts == [0]
    for p, b, s in zip(high, before, state):
        assert torch.equal(p, b)
        assert all(torch.equal(optimizer.state[p][k], v) for k, v in s.items())
    assert any(not torch.equal(p, b) for p, b in zip(adapter.expert_parameters()[1], low_before))


def _two_ranks(rank, port, out):
    """One data-parallel rank: two experts (one Linear each), AdamW with weight decay, ClippedStep.
    Step 1: both experts have samples (on different ranks). Step 2: only rank 1 has samples, of expert 0."""
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    import torch.distributed as dist

    from utils.pipeline import ClippedStep
    dist.init_process_group('gloo', rank=rank, world_size=2)
    torch.manual_seed(0)
    experts = [torch.nn.Linear(3, 3), torch.nn.Linear(3, 3)]
    params = [p for e in experts for p in e.parameters()]
    optimizer = torch.optim.AdamW(params, lr=0.1, weight_decay=0.1)
    clipper = ClippedStep(optimizer, params, 0.0)
    clipper.track_experts([list(e.parameters()) for e in experts], 'cpu')
    history = []
    for samples in ([[0], [1]], [[], [0, 0]]):
        mine = torch.tensor(samples[rank], dtype=torch.int64)
        clipper.count_samples(mine)
        for e, expert in enumerate(experts):
            if (mine == e).any():
                expert(torch.ones(1, 3)).sum().backward()
        for p in params:               # DeepSpeed's data-parallel all-reduce: missing gradients become zeros
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad)
        optimizer.step()
        clipper.zero_grad()
        history.append({'idle': list(clipper.idle_experts),
                        'weights': [p.detach().clone() for p in experts[1].parameters()],
                        'state': [{k: v.clone() for k, v in optimizer.state[p].items()} for p in experts[1].parameters()]})
    torch.save(history, os.path.join(out, f'rank{rank}.pt'))
    dist.barrier()
    dist.destroy_process_group()


def test_idle_expert_is_decided_across_data_parallel_ranks(tmp_path):
    """Two gloo ranks: in step 2 no rank has a sample of expert 1 (rank 0 has none at all), so neither
    rank steps it, although the all-reduce gave it zero gradients; expert 0 got samples on one rank only
    and both ranks step it."""
    import torch.multiprocessing as mp

    from tests.support.studio import free_port
    mp.spawn(_two_ranks, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        first, second = torch.load(tmp_path / f'rank{rank}.pt')
        assert first['idle'] == [] and second['idle'] == [1], rank
        for w1, w2 in zip(first['weights'], second['weights']):
            assert torch.equal(w1, w2), rank
        for s1, s2 in zip(first['state'], second['state']):
            assert s1.keys() == s2.keys() and all(torch.equal(s1[k], s2[k]) for k in s1), rank
            assert int(s2['step']) == 1
