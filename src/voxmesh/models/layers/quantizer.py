"""Vector quantiser of VQ-VAE (van den Oord et al., 2017), as CodeTalker and GLDiTalker use it.

``quantizer(z [..., D], mask [...]) -> Quantized(quantized [..., D], indices [...],
losses, perplexity)``: each vector is replaced by its nearest codebook entry; the
gradient passes straight through to ``z``.

Losses (means over the unmasked vectors and the ``D`` channels):

* ``codebook = mean((sg(z) - e)^2)`` pulls the codes toward the encoder outputs (zero
  when the codebook is updated by exponential moving averages instead);
* ``commitment = beta * mean((z - sg(e))^2)`` keeps the encoder near its codes
  (``beta = 0.25`` as in the VQ-VAE and CodeTalker papers);
* ``total`` is their sum.

Options: ``ema_decay`` updates the codebook by moving averages of assigned vectors
(Razavi et al., 2019) instead of by gradient; ``dead_code_threshold > 0`` restarts
codes that have gone unused at random encoder outputs of the current batch (as in
Jukebox). Both happen only in training mode and when ``update=True``. Neither
averages across processes: under DistributedDataParallel the buffers of rank 0 are
broadcast to the others at each forward.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class Quantized(NamedTuple):
    quantized: torch.Tensor  # [..., D] straight-through: forward value e, gradient to z
    indices: torch.Tensor  # [...] int64 code indices
    losses: dict[str, torch.Tensor]  # "codebook", "commitment" (beta included), "total"
    perplexity: torch.Tensor  # scalar: exp(entropy of code usage in this call)


class VectorQuantizer(nn.Module):
    """A codebook of ``num_codes`` vectors of size ``code_dim``.

    Parameters
    ----------
    beta: weight of the commitment loss.
    ema_decay: None for a codebook learned by gradient (the codebook loss); a decay in
        (0, 1), e.g. 0.99, for moving-average updates (the codebook is then a buffer).
    epsilon: Laplace smoothing of the moving-average cluster sizes.
    dead_code_threshold: a code whose moving-average usage (inputs won per batch,
        averaged with ``usage_decay``) falls below this is moved onto a random input of
        the current batch. 0 turns restarts off. New and restarted codes start with a
        usage of twice the threshold, a grace period of about ``ln 2 / (1 - usage_decay)``
        batches (69 at 0.99).
    """

    def __init__(self, num_codes: int, code_dim: int, *, beta: float = 0.25, ema_decay: float | None = None,
                 epsilon: float = 1e-5, dead_code_threshold: float = 0.0, usage_decay: float = 0.99):
        super().__init__()
        if num_codes < 1 or code_dim < 1:
            raise ValueError(f"num_codes and code_dim must be positive, got {num_codes} and {code_dim}")
        if ema_decay is not None and not 0.0 < ema_decay < 1.0:
            raise ValueError(f"ema_decay must lie in (0, 1) or be None, got {ema_decay}")
        self.num_codes = int(num_codes)
        self.code_dim = int(code_dim)
        self.beta = float(beta)
        self.ema_decay = None if ema_decay is None else float(ema_decay)
        self.epsilon = float(epsilon)
        self.dead_code_threshold = float(dead_code_threshold)
        self.usage_decay = float(usage_decay)

        # Uniform in +-1/K as in the VQ-VAE paper: small codes near the origin.
        initial = torch.empty(num_codes, code_dim).uniform_(-1.0 / num_codes, 1.0 / num_codes)
        if self.ema_decay is None:
            self.codebook = nn.Parameter(initial)
        else:
            self.register_buffer("codebook", initial)
            # Cluster sizes start at one with sums equal to the codes, so a never-used code
            # keeps its value instead of drifting toward 0/0.
            self.register_buffer("cluster_size", torch.ones(num_codes))
            self.register_buffer("code_sum", initial.clone())
        self.register_buffer("usage", torch.full((num_codes,), 2.0 * self.dead_code_threshold))

    # ---- lookups ---------------------------------------------------------------------
    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """Indices ``[...]`` of the nearest codes (squared L2) for ``z [..., D]``."""
        # float32 distances even under autocast: bf16 would misassign near-ties
        with torch.autocast(device_type=z.device.type, enabled=False):
            flat = z.reshape(-1, self.code_dim).float()
            codebook = self.codebook.float()
            distance = (flat.pow(2).sum(1, keepdim=True) - 2.0 * flat @ codebook.t()
                        + codebook.pow(2).sum(1)[None])
            return distance.argmin(dim=1).reshape(z.shape[:-1])

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Code vectors ``[..., D]`` for ``indices [...]``."""
        return F.embedding(indices, self.codebook)

    # ---- the quantiser ---------------------------------------------------------------
    def forward(self, z: torch.Tensor, mask: torch.Tensor | None = None, *, update: bool = True) -> Quantized:
        """Quantise ``z [..., D]``; ``mask [...]`` (True where real) leaves padding out of
        the losses, the perplexity and the codebook updates."""
        if z.shape[-1] != self.code_dim:
            raise ValueError(f"quantiser expects vectors of size {self.code_dim}, got {z.shape[-1]}")
        indices = self.nearest(z.detach())
        codes = self.lookup(indices).to(z.dtype)

        if mask is None:
            weight = torch.ones(z.shape[:-1], dtype=z.dtype, device=z.device)
        else:
            weight = mask.to(z.dtype).expand(z.shape[:-1])
        count = weight.sum().clamp(min=1.0)
        codebook_loss = (((z.detach() - codes) ** 2).sum(-1) * weight).sum() / (count * self.code_dim)
        commitment = (((z - codes.detach()) ** 2).sum(-1) * weight).sum() / (count * self.code_dim)
        if self.ema_decay is not None:
            codebook_loss = codebook_loss * 0.0  # the codebook learns by moving averages
        losses = {"codebook": codebook_loss, "commitment": self.beta * commitment}
        losses["total"] = losses["codebook"] + losses["commitment"]

        flat_weight = weight.reshape(-1).detach().float()
        assignments = F.one_hot(indices.reshape(-1), self.num_codes).float() * flat_weight[:, None]
        counts = assignments.sum(0)  # [K] inputs won by each code
        probabilities = counts / counts.sum().clamp(min=1.0)
        perplexity = torch.exp(-(probabilities * torch.log(probabilities.clamp(min=1e-10))).sum())

        if self.training and update:
            flat = z.detach().reshape(-1, self.code_dim).float()
            with torch.no_grad():
                if self.ema_decay is not None:
                    self._ema_update(flat, assignments, counts)
                if self.dead_code_threshold > 0:
                    self._restart_dead_codes(flat[flat_weight > 0], counts)

        # Straight-through estimator: the value of the code, the gradient of the identity.
        quantized = z + (codes - z).detach()
        return Quantized(quantized, indices, losses, perplexity)

    # ---- codebook updates ------------------------------------------------------------
    @torch.no_grad()
    def initialise_from(self, flat: torch.Tensor) -> bool:
        """Set every code to a random input vector of ``flat [N, D]`` (as Jukebox and
        SoundStream start their codebooks): codes start where the encoder's outputs are,
        instead of in a tiny ball at the origin that only a few inputs ever reach. Every
        process of a distributed run gets rank 0's codebook. False when ``flat`` is empty."""
        if flat.shape[0] == 0:
            return False
        if flat.shape[0] >= self.num_codes:
            chosen = torch.randperm(flat.shape[0], device=flat.device)[: self.num_codes]
        else:
            chosen = torch.randint(flat.shape[0], (self.num_codes,), device=flat.device)
        codes = flat[chosen].to(self.codebook.dtype)
        # tiny jitter: inputs repeated in a small first batch would give identical codes
        codes = codes + 1e-3 * codes.std().clamp(min=1e-6) * torch.randn_like(codes)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.broadcast(codes, src=0)
        self.codebook.data.copy_(codes)
        if self.ema_decay is not None:
            self.cluster_size.fill_(1.0)
            self.code_sum.copy_(codes)
        return True

    def _ema_update(self, flat: torch.Tensor, assignments: torch.Tensor, counts: torch.Tensor) -> None:
        decay = self.ema_decay
        self.cluster_size.mul_(decay).add_(counts, alpha=1.0 - decay)
        self.code_sum.mul_(decay).add_(assignments.t() @ flat, alpha=1.0 - decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.epsilon) / (total + self.num_codes * self.epsilon) * total
        self.codebook.copy_(self.code_sum / smoothed[:, None])

    def _restart_dead_codes(self, flat: torch.Tensor, counts: torch.Tensor) -> int:
        """Move codes whose usage fell below the threshold onto random inputs; returns
        how many moved."""
        self.usage.mul_(self.usage_decay).add_(counts, alpha=1.0 - self.usage_decay)
        dead = torch.nonzero(self.usage < self.dead_code_threshold).flatten()
        if dead.numel() == 0 or flat.shape[0] == 0:
            return 0
        # Sample with replacement when the batch has fewer vectors than dead codes.
        if flat.shape[0] >= dead.numel():
            chosen = torch.randperm(flat.shape[0], device=flat.device)[: dead.numel()]
        else:
            chosen = torch.randint(flat.shape[0], (dead.numel(),), device=flat.device)
        new_codes = flat[chosen].to(self.codebook.dtype)
        self.codebook.data[dead] = new_codes
        if self.ema_decay is not None:
            self.cluster_size[dead] = 1.0
            self.code_sum[dead] = new_codes
        self.usage[dead] = 2.0 * self.dead_code_threshold
        return int(dead.numel())

    def extra_repr(self) -> str:
        return (f"num_codes={self.num_codes}, code_dim={self.code_dim}, beta={self.beta}, "
                f"ema_decay={self.ema_decay}, dead_code_threshold={self.dead_code_threshold}")


__all__ = ["Quantized", "VectorQuantizer"]
