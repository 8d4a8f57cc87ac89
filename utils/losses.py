"""The per-element training loss the config picks: MSE, or one of the robust losses diffusion-pipe offers.

    loss = elementwise_loss(output.float(), target.float(), config)     # same shape as output

Keys (top level of the main config, at most one set): `pseudo_huber_c` sqrt(d^2 + c^2) - c,
`huber_delta` torch's huber_loss, `smooth_l1_beta` torch's smooth_l1_loss; none: (output - target)^2.
"""

import torch.nn.functional as F


def elementwise_loss(output, target, config):
    if (c := config.get('pseudo_huber_c')):
        d = output - target
        return (d.square() + c * c).sqrt() - c
    if (delta := config.get('huber_delta')):
        return F.huber_loss(output, target, reduction='none', delta=delta)
    if (beta := config.get('smooth_l1_beta')):
        return F.smooth_l1_loss(output, target, reduction='none', beta=beta)
    return (output - target).square()
