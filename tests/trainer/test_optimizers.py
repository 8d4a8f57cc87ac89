"""Every optimizer a config can name builds from an [optimizer] table and actually minimises a loss,
for float32 and bfloat16 weights; Kahan summation keeps bfloat16 weights on the float32 path."""

import io

import pytest
import torch

from optimizers import build_optimizer, optimizer_arguments, optimizer_class

TARGET = torch.randn(64, 256, generator=torch.Generator().manual_seed(0))


def fit(cfg, dtype, steps=150):
    w = torch.nn.Parameter(torch.zeros(64, 256, dtype=dtype))
    opt = build_optimizer(cfg, [w])
    start = ((w.float() - TARGET) ** 2).mean().item()
    for _ in range(steps):
        opt.zero_grad()
        loss = ((w.float() - TARGET) ** 2).mean()
        loss.backward()
        opt.step()
    return start, ((w.float() - TARGET) ** 2).mean().item(), opt


@pytest.mark.parametrize('name, lr', [('adamw', 1e-2), ('adamw8bit', 1e-2), ('AdamW8bitKahan', 1e-2),
                                      ('adamw_optimi', 1e-2), ('stableadamw', 1e-2), ('Prodigy', 1.0),
                                      ('sgd', 50.0), ('RAdam', 1e-1), ('Adagrad', 1e-1)])
@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_optimizer_minimises(name, lr, dtype):
    start, end, _ = fit({'type': name, 'lr': lr}, dtype)
    assert end < 0.2 * start, (name, dtype, start, end)


def test_kahan_keeps_bfloat16_updates_that_plain_adamw_loses():
    """At a small learning rate most bf16 updates round away; Kahan summation carries them."""
    cfg = {'lr': 2e-4, 'betas': [0.9, 0.99], 'weight_decay': 0.0}
    _, plain, _ = fit({'type': 'adamw', **cfg}, torch.bfloat16, steps=300)
    _, kahan, _ = fit({'type': 'adamw_optimi', **cfg}, torch.bfloat16, steps=300)
    _, exact, _ = fit({'type': 'adamw', **cfg}, torch.float32, steps=300)
    assert abs(kahan - exact) < 0.2 * abs(plain - exact)


def test_8bit_states_are_stored_in_8_bits():
    _, _, opt = fit({'type': 'AdamW8bitKahan', 'lr': 1e-2}, torch.bfloat16, steps=2)
    state = next(iter(opt.state.values()))
    assert state['exp_avg_q'].dtype == torch.uint8 and state['exp_avg_sq_q'].dtype == torch.uint8
    assert state['compensation'].dtype == torch.bfloat16


@pytest.mark.parametrize('name', ['adamw_optimi', 'AdamW8bitKahan'])
def test_a_resumed_optimizer_continues_exactly(name):
    """State saved and loaded (as a checkpoint resume does) keeps its dtypes: float32 moments of bfloat16
    weights and 8-bit codes are not cast to the weights' dtype, so the next steps are the same."""
    _, _, opt = fit({'type': name, 'lr': 1e-2}, torch.bfloat16, steps=3)
    (w,) = opt.param_groups[0]['params']
    copy = torch.nn.Parameter(w.detach().clone())
    fresh = build_optimizer({'type': name, 'lr': 1e-2}, [copy])
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    saved, loaded = opt.state[w], fresh.state[copy]
    assert {k: v.dtype for k, v in loaded.items()} == {k: v.dtype for k, v in saved.items()}
    for param, o in ((w, opt), (copy, fresh)):
        for _ in range(3):
            o.zero_grad()
            ((param.float() - TARGET) ** 2).mean().backward()
            o.step()
    assert torch.equal(copy, w)


def test_names_are_case_insensitive_and_unknown_names_are_refused():
    assert optimizer_class('ADAMW') is optimizer_class('adamw')
    assert {'momentum', 'nesterov'} <= optimizer_arguments('sgd')
    with pytest.raises(KeyError, match="unknown optimizer 'adamww'"):
        optimizer_class('adamww')
