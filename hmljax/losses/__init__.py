"""Pure, unreduced losses over logits ``[B, C]``."""

from hmljax.losses._mcloss import binary_cross_entropy, constrained_probs, mc_logits, mc_loss

__all__ = ["binary_cross_entropy", "constrained_probs", "mc_logits", "mc_loss"]
