"""Learning-rate schedule and training-timestep distribution: the numbers a user's run depends on."""

import math

import pytest
import torch

from utils import timesteps
from utils.schedule import build_scheduler, lr_multiplier, sync_lr


def test_warmup_then_constant_linear_and_cosine():
    assert [lr_multiplier(s, 4, 20, 'constant') for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert lr_multiplier(4, 4, 20, 'linear') == 1.0
    assert lr_multiplier(12, 4, 20, 'linear') == pytest.approx(0.5)
    assert lr_multiplier(20, 4, 20, 'linear') == 0.0
    assert lr_multiplier(12, 4, 20, 'cosine') == pytest.approx(0.5)
    assert lr_multiplier(20, 4, 20, 'cosine') == pytest.approx(0.0)
    with pytest.raises(ValueError):
        lr_multiplier(5, 0, 10, 'exponential')


def test_logit_normal_is_symmetric_and_sigmoid_scale_widens_it():
    t = timesteps.base_table('logit_normal', 1.0)
    assert t[len(t) // 2] == pytest.approx(0.5, abs=1e-3)
    assert torch.all(t[1:] >= t[:-1])
    wide = timesteps.base_table('logit_normal', 2.0)
    assert wide[100] < t[100] and wide[-100] > t[-100]


def test_shift_moves_mass_toward_noise():
    t = timesteps.base_table('uniform')
    shifted = timesteps.shift_table(t, 3.0)
    assert shifted[len(t) // 2] == pytest.approx(3 * 0.5 / (1 + 2 * 0.5), abs=1e-3)   # 0.75
    assert torch.all(shifted >= t - 1e-12)


def test_min_max_t_restrict_the_range_and_quantiles_are_exact():
    table = timesteps.timestep_table({'timestep_sample_method': 'uniform', 'min_t': 0.875, 'max_t': 1.0})
    draws = timesteps.sample(table, 1000, torch.Generator().manual_seed(0))
    assert draws.min() >= 0.875 and draws.max() <= 1.0
    q = timesteps.sample(table, 3, quantile=0.5)
    assert torch.all(q == q[0]) and q[0] == pytest.approx(0.9375, abs=1e-3)
    with pytest.raises(ValueError, match='no timesteps left'):
        timesteps.restrict(timesteps.base_table('uniform'), 0.5, 0.5)


def test_flux_shift_grows_with_resolution():
    small = timesteps.timestep_table({'timestep_sample_method': 'uniform', 'flux_shift': True}, latent_tokens=256)
    large = timesteps.timestep_table({'timestep_sample_method': 'uniform', 'flux_shift': True}, latent_tokens=4096)
    mid = len(small) // 2
    assert small[mid] == pytest.approx(math.exp(0.5) / (math.exp(0.5) + 1), abs=1e-3)
    assert large[mid] > small[mid]


def test_continuing_a_finished_decay_for_more_steps_starts_at_the_new_schedules_rate():
    """A finished linear decay leaves lr 0 in the optimizer state; continued with more total steps (more
    epochs), the next step takes the rate the new schedule gives it. An unchanged schedule keeps its rate."""
    def run(total, state=None, steps=0):
        p = torch.nn.Parameter(torch.zeros(3))
        opt = torch.optim.AdamW([p], lr=1e-3)
        sched = build_scheduler(opt, 2, total, 'linear')
        if state:
            opt.load_state_dict(state[0])
            sched.load_state_dict(state[1])
            sync_lr(sched)
        for _ in range(steps):
            p.grad = torch.ones(3)
            opt.step()
            sched.step()
        return opt, sched

    opt, sched = run(10, steps=10)
    assert opt.param_groups[0]['lr'] == 0.0
    saved = (opt.state_dict(), sched.state_dict())
    longer, _ = run(20, saved)
    assert longer.param_groups[0]['lr'] == pytest.approx(1e-3 * lr_multiplier(10, 2, 20, 'linear'))
    opt, sched = run(10, steps=4)
    same, _ = run(10, (opt.state_dict(), sched.state_dict()))
    assert same.param_groups[0]['lr'] == opt.param_groups[0]['lr']
