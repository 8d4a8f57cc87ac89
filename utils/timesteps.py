"""Training timesteps for flow matching.

t = 0 is the clean latent, t = 1 pure noise; x_t = (1 - t) * x0 + t * noise and the network
predicts noise - x0 at timestep t * 1000. The distribution of t is tabulated once as 10,000
quantiles, so that shifting, restricting to [min_t, max_t] and evaluating at a fixed quantile
are all exact and cheap:

    table = timestep_table(model_config)          # sorted, shifted, restricted
    t = sample(table, batch, generator)           # random draw
    t = sample(table, batch, quantile=0.3)        # the 30th percentile (evaluation)

Two experts split at a boundary (Wan2.2 A14B: t >= boundary goes to the high-noise one):

    high_noise_share(table, 0.875)                # the fraction of draws at or above the boundary
    t = sample_balanced(table, 0.875, batch, generator)   # either side with probability 1/2
"""

import math

import torch

GRID = 10_000


def base_table(method='logit_normal', sigmoid_scale=1.0):
    quantiles = torch.linspace(1 / GRID, 1 - 1 / GRID, GRID, dtype=torch.float64)
    if method == 'logit_normal':
        normal = torch.distributions.Normal(torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64))
        return torch.sigmoid(normal.icdf(quantiles) * sigmoid_scale)
    if method == 'uniform':
        return quantiles
    raise ValueError(f'unknown timestep_sample_method {method!r}')


def shift_table(t, shift):
    """Shift toward noise: t' = s*t / (1 + (s - 1)*t). s > 1 spends more steps at high noise."""
    return (t * shift) / (1 + (shift - 1) * t)


def flux_shift_table(t, latent_tokens):
    """Resolution-dependent shift: mu grows linearly in the token count (256 -> 0.5, 4096 -> 1.15)."""
    mu = 0.5 + (1.15 - 0.5) * (latent_tokens - 256) / (4096 - 256)
    return math.exp(mu) / (math.exp(mu) + (1 / t - 1))


def restrict(t, min_t=0.0, max_t=1.0):
    lo = int(torch.searchsorted(t, torch.tensor(min_t, dtype=t.dtype)))
    hi = int(torch.searchsorted(t, torch.tensor(max_t, dtype=t.dtype)))
    if hi <= lo:
        raise ValueError(f'no timesteps left between min_t={min_t} and max_t={max_t}')
    return t[lo:hi]


def timestep_table(model_config, latent_tokens=None):
    t = base_table(model_config.get('timestep_sample_method', 'logit_normal'), model_config.get('sigmoid_scale', 1.0))
    if model_config.get('shift'):
        t = shift_table(t, model_config['shift'])
    elif model_config.get('flux_shift') and latent_tokens:
        t = flux_shift_table(t, latent_tokens)
    return restrict(t, model_config.get('min_t', 0.0), model_config.get('max_t', 1.0))


def sample(table, batch, generator=None, quantile=None):
    if quantile is not None:
        index = torch.full((batch,), min(int(quantile * len(table)), len(table) - 1), dtype=torch.long)
    else:
        index = torch.randint(0, len(table), (batch,), generator=generator)
    return table[index].float()


def high_noise_share(table, boundary):
    """The expected fraction of `sample` draws with t >= boundary. Exact for the sampler, which draws
    uniformly among the table's quantiles: the fraction of them at or above the boundary."""
    return float((table >= boundary).double().mean())


def sample_balanced(table, boundary, batch, generator=None):
    """Each draw picks a side of the boundary with probability 1/2 (the only side when the other holds no
    timestep), then t from the table's distribution restricted to that side."""
    split = int(torch.searchsorted(table, torch.tensor(boundary, dtype=table.dtype)))
    high = torch.rand(batch, generator=generator) < 0.5
    if split in (0, len(table)):
        return sample(table, batch, generator)
    low_index = torch.randint(0, split, (batch,), generator=generator)
    high_index = torch.randint(split, len(table), (batch,), generator=generator)
    return table[torch.where(high, high_index, low_index)].float()
