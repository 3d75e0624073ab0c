"""DELA's network (Hang & Zhang, ICML 2022, "Dual perspective of label-specific feature learning"), in Flax Linen.

Shape legend: ``B`` batch, ``D`` input features, ``C`` labels, ``Z`` latent width (``ceil(D / 2)``),
``H`` hidden width.

The network, as the adaptive-batch code's ``model.py`` (CquptZA/MLAdaBatch, the ``DELA`` class, with
``layers.MLP`` and ``util.gumbel_sigmoid``) builds it; read there, written here from the equations:

- encoder ``D -> 256 -> 512 -> 256``, each layer followed by ReLU and dropout (the released ``MLP`` also
  puts them after its output layer), then two linear heads ``256 -> Z``: ``mu`` and ``logvar``;
- per-label binary Concrete gates: free logits ``[C, Z]`` (init U(-10, 10)) through one ``Z -> Z``
  linear layer (bias init 2); in training a hard Gumbel-sigmoid sample ``s [C, Z]`` with a
  straight-through gradient, drawn once per batch and shared by its rows;
- label-specific representations ``z_k = mu + s_k * sigma * eps`` ``[B, C, Z]``, with ``eps [B, Z]``
  drawn once per row and shared by its labels (the released ``_add_noise``); in eval ``z_k = mu``
  (no gates, no noise);
- decoder on ``[x, z_k]``: ``(D + Z) -> 256 -> 512``, ReLU and dropout after both layers, then a
  per-label linear ``512 -> 1`` (the released grouped ``Conv1d``): logits ``[B, C]``.

Initialisation follows the released code: the encoder's and decoder's linear layers use
``kaiming_uniform_(nonlinearity='relu')`` weights (U(±sqrt(6 / fan_in))) and U(0, 0.1) biases;
``mu``, ``logvar``, the gate scale layer and the per-label classifier use PyTorch's default
(U(±1 / sqrt(fan_in)) for weights and biases).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from hmljax.models._mlp import torch_linear_init

__all__ = ["Dela", "gumbel_sigmoid_hard", "dela_kl"]


def _kaiming_relu_uniform(fan_in: int):
    """``nn.init.kaiming_uniform_(w, nonlinearity='relu')``: U(±sqrt(2) * sqrt(3 / fan_in))."""
    bound = (6.0 / fan_in) ** 0.5

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def _uniform(low: float, high: float):
    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, low, high)

    return init


def gumbel_sigmoid_hard(key: jax.Array, logits: Float[Array, "..."], *, tau: float) -> Float[Array, "..."]:
    """A hard sample of the binary Concrete distribution with a straight-through gradient.

    ``soft = sigmoid((logits + L) / tau)`` with logistic noise ``L = log u - log(1 - u)``, ``u ~ U(eps, 1 - eps)``
    (Maddison et al. 2017; Jang et al. 2017). The value is ``1[soft > 0.5]`` (which does not depend on
    ``tau``); the gradient is that of ``soft``, so the temperature only shapes the gradient.

    Args:
        key: PRNG key for the noise.
        logits: the gates' logits (any shape).
        tau: the temperature (DELA: 2/3).

    Returns:
        0/1 values of ``logits``' shape, differentiable through ``soft``.
    """
    eps = jnp.finfo(logits.dtype).eps
    u = jnp.clip(jax.random.uniform(key, logits.shape, logits.dtype), eps, 1.0 - eps)
    soft = jax.nn.sigmoid((logits + jnp.log(u) - jnp.log1p(-u)) / tau)
    hard = (soft > 0.5).astype(logits.dtype)
    return hard + (soft - jax.lax.stop_gradient(soft))  # exactly 0 or 1 in value; the bracket keeps it so


def dela_kl(mu: Float[Array, "B Z"], logvar: Float[Array, "B Z"], gates: Float[Array, "C Z"]) -> Float[Array, "B C"]:
    """DELA's KL term per (row, label): ``0.5 * sum_Z(-logvar - 2 log(s + 1e-6) - 1 + exp(logvar) s^2 + mu^2)``.

    The KL divergence between the label-specific perturbed representation ``N(mu, s^2 sigma^2)`` and
    ``N(0, I)``, as the released ``_KL`` computes it; the 1e-6 keeps ``log s`` finite where a gate is
    closed (s = 0), so a closed gate costs ``-log(1e-6)`` per dimension and its straight-through gradient
    in s is ``-1e6`` per dimension (before beta and the means): the released code's behaviour, whose
    clamp of s away from 0 (``off_noise``) is commented out.

    Args:
        mu: latent means.
        logvar: log-variances of the noise (log sigma^2).
        gates: the gates ``s`` (hard 0/1 samples in training, or any values in [0, 1]).

    Returns:
        The KL term of each row for each label.
    """
    mu_Bx1xZ, logvar_Bx1xZ, s_1xCxZ = mu[:, None, :], logvar[:, None, :], gates[None, :, :]
    terms_BxCxZ = (-logvar_Bx1xZ - 2.0 * jnp.log(s_1xCxZ + 1e-6) - 1.0 + jnp.exp(logvar_Bx1xZ) * s_1xCxZ**2
                   + mu_Bx1xZ**2)
    return 0.5 * terms_BxCxZ.sum(-1)


class Dela(nn.Module):
    """DELA: returns ``{"logits" [B, C], "mu" [B, Z], "logvar" [B, Z]}`` and, in training, ``"gates" [C, Z]``.

    In training (``train=True``) the module draws from the ``dropout``, ``gates`` and ``noise`` RNG
    streams and ``gates`` holds the hard samples ``s``; eval is deterministic (``z_k = mu``: no gates,
    no noise, as the released ``predict``), so it returns no gates.

    Attributes:
        num_labels: C.
        latent: Z (the released code: ``ceil(D / 2)``).
        encoder_widths: the encoder's layer widths (256, 512, 256).
        decoder_widths: the decoder's layer widths (256, 512).
        dropout: drop probability after every encoder and decoder layer (0.2).
        tau: the gates' Concrete temperature (2/3).
    """

    num_labels: int
    latent: int
    encoder_widths: Sequence[int] = (256, 512, 256)
    decoder_widths: Sequence[int] = (256, 512)
    dropout: float = 0.2
    tau: float = 2.0 / 3.0

    @nn.compact
    def __call__(self, x: Float[Array, "B D"], *, train: bool) -> dict:
        C, Z = self.num_labels, self.latent
        drop = nn.Dropout(self.dropout, deterministic=not train)

        h = x
        for k, width in enumerate(self.encoder_widths):
            f = h.shape[-1]
            h = nn.Dense(width, kernel_init=_kaiming_relu_uniform(f), bias_init=_uniform(0.0, 0.1),
                         name=f"encoder_{k}")(h)
            h = drop(nn.relu(h))
        f = h.shape[-1]
        mu = nn.Dense(Z, kernel_init=torch_linear_init(f), bias_init=torch_linear_init(f), name="mu")(h)
        logvar = nn.Dense(Z, kernel_init=torch_linear_init(f), bias_init=torch_linear_init(f), name="logvar")(h)

        gate_param_CxZ = self.param("gate_logits", _uniform(-10.0, 10.0), (C, Z))
        gate_logits_CxZ = nn.Dense(Z, kernel_init=torch_linear_init(Z), bias_init=nn.initializers.constant(2.0),
                                   name="gate_scale")(gate_param_CxZ)

        # The decoder's first layer over the concatenation [x, z_k] is split into an x part (computed
        # once per row) and a z part (per label), so [B, C, D + Z] is never built.
        fan_in, width0 = x.shape[-1] + Z, self.decoder_widths[0]
        hx_BxH = nn.Dense(width0, kernel_init=_kaiming_relu_uniform(fan_in), bias_init=_uniform(0.0, 0.1),
                          name="decoder_0_x")(x)
        kernel_z_ZxH = self.param("decoder_0_z", _kaiming_relu_uniform(fan_in), (Z, width0))
        cls_kernel_CxH = self.param("classifier_kernel", torch_linear_init(self.decoder_widths[-1]),
                                    (C, self.decoder_widths[-1]))
        cls_bias_C = self.param("classifier_bias", torch_linear_init(self.decoder_widths[-1]), (C,))

        out = {"mu": mu, "logvar": logvar}
        if train:
            gates_CxZ = gumbel_sigmoid_hard(self.make_rng("gates"), gate_logits_CxZ, tau=self.tau)
            eps_BxZ = jax.random.normal(self.make_rng("noise"), mu.shape, mu.dtype)
            noise_BxZ = jnp.exp(0.5 * logvar) * eps_BxZ
            z_BxCxZ = mu[:, None, :] + gates_CxZ[None, :, :] * noise_BxZ[:, None, :]
            h_BxCxH = drop(nn.relu(hx_BxH[:, None, :] + z_BxCxZ @ kernel_z_ZxH))
            h_BxCxH = self._decoder_rest(h_BxCxH, drop)
            logits_BxC = jnp.einsum("bqh,qh->bq", h_BxCxH, cls_kernel_CxH) + cls_bias_C[None, :]
            out["gates"] = gates_CxZ
        else:
            # Every label sees the same z = mu, so the decoder runs once per row ([B, H], not [B, C, H]).
            h_BxH = drop(nn.relu(hx_BxH + mu @ kernel_z_ZxH))
            h_BxH = self._decoder_rest(h_BxH, drop)
            logits_BxC = h_BxH @ cls_kernel_CxH.T + cls_bias_C[None, :]
        return {"logits": logits_BxC, **out}

    def _decoder_rest(self, h, drop):
        for k, width in enumerate(self.decoder_widths[1:], start=1):
            f = self.decoder_widths[k - 1]
            h = nn.Dense(width, kernel_init=_kaiming_relu_uniform(f), bias_init=_uniform(0.0, 0.1),
                         name=f"decoder_{k}")(h)
            h = drop(nn.relu(h))
        return h
