"""The PyTorch side of the benchmarks: C-HMCNN's network, MCLoss and train step, written from the paper.

Float32 throughout (the reference casts the constraint to float64; both sides
here use float32 so they compute the same thing at the same precision).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def mlp(num_features: int, hidden: int, num_outputs: int, dropout: float) -> nn.Module:
    """in -> H -> H -> out with ReLU and dropout after the first two layers; returns logits."""
    return nn.Sequential(nn.Linear(num_features, hidden), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(hidden, num_outputs))


def load_flax_params(module: nn.Module, params) -> None:
    """Copies a ChmcnnMLP's parameters (kernel [in, out]) into the module's Linear layers (weight [out, in]).

    ``module`` is :func:`mlp`'s Sequential or any module whose Linear layers,
    in registration order, are ``dense_0``, ``dense_1``, ...
    """
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for k, lin in enumerate(linears):
            lin.weight.copy_(torch.as_tensor(np.asarray(params[f"dense_{k}"]["kernel"]).T.copy()))
            lin.bias.copy_(torch.as_tensor(np.asarray(params[f"dense_{k}"]["bias"]).copy()))


def mcm(h: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
    """C-HMCNN's max-constraint module on probabilities: max_j R[i, j] h[b, j] over [B, N, N]."""
    B, N = h.shape
    return torch.max(R.unsqueeze(0).expand(B, N, N) * h.unsqueeze(1).expand(B, N, N), dim=2).values


def mc_loss(logits: torch.Tensor, y: torch.Tensor, R: torch.Tensor, to_eval: torch.Tensor) -> torch.Tensor:
    """MCLoss: BCE of (1 - y) MCM(h) + y MCM(y h), mean over the evaluated nodes (C-HMCNN's train path).

    ``to_eval`` is a boolean mask or an index tensor (indices also work under ``torch.func.vmap``).
    """
    h = torch.sigmoid(logits)
    out = (1 - y) * mcm(h, R) + y * mcm(y * h, R)
    if to_eval.dtype == torch.bool:
        to_eval = torch.nonzero(to_eval).squeeze(1)
    return nn.functional.binary_cross_entropy(out.index_select(-1, to_eval), y.index_select(-1, to_eval))


def loop_step(models, optimizer, x: torch.Tensor, y: torch.Tensor, R: torch.Tensor, to_eval: torch.Tensor):
    """RARE's released training loop for E members: the members' MCLosses summed, one backward, one Adam step."""
    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = sum(mc_loss(m(x), y, R, to_eval) for m in models)
        loss.backward()
        optimizer.step()
        return loss
    return step
