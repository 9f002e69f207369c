"""Diffusion schedule and samplers for latent diffusion, a thin layer over ``diffusers``.

:class:`LatentDiffusion` holds one noise schedule (1000 training steps and a
scaled-linear beta schedule by default, the latent-diffusion setting) and gives:

* training: :meth:`~LatentDiffusion.sample_timesteps` and :meth:`~LatentDiffusion.add_noise`
  (``diffusers.DDPMScheduler``'s forward process ``x_t = sqrt(a_t) x_0 + sqrt(1 - a_t) eps``);
* sampling: :meth:`~LatentDiffusion.sample`, DDIM (``diffusers.DDIMScheduler``) with any
  number of steps and ``eta`` (0: deterministic given the start noise; 1: DDPM-like).

The network predicts ``x_0`` (``prediction_type="sample"``), not the noise: with few
sampling steps an ``x_0`` model gives usable outputs at every step, and a loss on
``x_0`` (and on its velocity, or through a decoder) is direct.

Choices fixed here, and why:

* ``timestep_spacing="trailing"``: sampling starts at ``t = T - 1`` whatever the number
  of steps (the ``"leading"`` default of diffusers starts at ``980`` for 50 steps and at
  ``0`` for one step, i.e. never from noise);
* the sampler returns the network's last ``x_0`` prediction (one step = one ``x_0``
  prediction from pure noise);
* ``clip_sample=False``: latents are not bounded to ``[-1, 1]``;
* ``zero_terminal_snr`` (off by default) rescales the betas so that ``t = T - 1`` is pure
  noise (Lin et al., 2024); the scaled-linear schedule alone ends at ``sqrt(a_T) = 0.07``.

``diffusers`` is imported when a schedule is built (it takes about two seconds), not
when this module is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from voxmesh.errors import VoxmeshError

# The latent-diffusion (Stable Diffusion) scaled-linear betas.
DEFAULT_BETA_START = 0.00085
DEFAULT_BETA_END = 0.012


def _schedulers():
    try:
        from diffusers.schedulers.scheduling_ddim import DDIMScheduler
        from diffusers.schedulers.scheduling_ddpm import DDPMScheduler
    except ImportError:
        raise VoxmeshError(
            "Latent diffusion needs the diffusers package, which is not installed; run `pip install diffusers`."
        ) from None
    return DDPMScheduler, DDIMScheduler


class LatentDiffusion:
    """A noise schedule with DDPM training and DDIM sampling for ``x_0``-predicting models.

    Parameters
    ----------
    num_train_timesteps: steps of the forward process (1000).
    beta_start, beta_end: end points of the betas; ``beta_schedule="scaled_linear"``
        spaces ``sqrt(beta)`` linearly between them.
    zero_terminal_snr: rescale the betas so that the last step is pure noise.
    """

    def __init__(self, num_train_timesteps: int = 1000, beta_start: float = DEFAULT_BETA_START,
                 beta_end: float = DEFAULT_BETA_END, beta_schedule: str = "scaled_linear",
                 zero_terminal_snr: bool = False):
        if int(num_train_timesteps) < 1:
            raise VoxmeshError(f"num_train_timesteps must be at least 1, got {num_train_timesteps}.")
        if not 0.0 < float(beta_start) < float(beta_end) < 1.0:
            raise VoxmeshError(f"Betas must satisfy 0 < beta_start < beta_end < 1, got {beta_start} and {beta_end}.")
        self.settings: dict[str, Any] = {
            "num_train_timesteps": int(num_train_timesteps),
            "beta_start": float(beta_start),
            "beta_end": float(beta_end),
            "beta_schedule": str(beta_schedule),
            "rescale_betas_zero_snr": bool(zero_terminal_snr),
            "prediction_type": "sample",
            "clip_sample": False,
        }
        ddpm, _ = _schedulers()
        self.training_scheduler = ddpm(**self.settings)
        self.num_train_timesteps = int(num_train_timesteps)

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        """``[num_train_timesteps]`` cumulative products of ``1 - beta`` (float32, CPU)."""
        return self.training_scheduler.alphas_cumprod

    # ---- training ------------------------------------------------------------------------
    def sample_timesteps(self, batch_size: int, device: torch.device | str | None = None,
                         generator: torch.Generator | None = None) -> torch.Tensor:
        """``[batch_size]`` int64 steps drawn uniformly from ``[0, num_train_timesteps)``."""
        steps = torch.randint(0, self.num_train_timesteps, (batch_size,), generator=generator,
                              device=generator.device if generator is not None else "cpu")
        return steps.to(device) if device is not None else steps

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """``x_t`` for clean ``x0 [B, ...]``, ``noise`` of the same shape and ``timesteps [B]``."""
        return self.training_scheduler.add_noise(x0, noise, timesteps.to(x0.device))

    # ---- sampling ------------------------------------------------------------------------
    def ddim(self, steps: int, device: torch.device | str | None = None):
        """A fresh ``DDIMScheduler`` on this schedule, set to ``steps`` sampling steps
        (fresh each call: diffusers schedulers keep per-run state)."""
        steps = int(steps)
        if not 1 <= steps <= self.num_train_timesteps:
            raise VoxmeshError(
                f"The number of sampling steps must lie between 1 and {self.num_train_timesteps}, got {steps}."
            )
        _, ddim = _schedulers()
        scheduler = ddim(**self.settings, set_alpha_to_one=True, timestep_spacing="trailing")
        scheduler.set_timesteps(steps, device=device)
        return scheduler

    @torch.no_grad()
    def sample(self, predict_x0: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], noise: torch.Tensor,
               steps: int, eta: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """DDIM from ``noise`` (the start ``x_T``, any shape) in ``steps`` steps.

        ``predict_x0(x_t, t)`` returns the model's clean estimate for ``x_t`` at the scalar
        int64 step ``t`` (guidance, windowing and the like happen inside it). With
        ``eta > 0`` the extra noise of each step comes from ``generator``. Returns the last
        step's ``x_0`` prediction, of the shape of ``noise`` (for step counts that do not
        divide ``num_train_timesteps`` DDIM's last update would land on ``t = 0`` rather
        than on the clean sample, so the prediction itself is returned)."""
        scheduler = self.ddim(steps)
        sample = noise
        x0 = noise
        timesteps = scheduler.timesteps.tolist()
        for index, t in enumerate(timesteps):
            x0 = predict_x0(sample, torch.tensor(t, dtype=torch.long))
            if index + 1 < len(timesteps):  # the last step's x_{t-1} would only re-mix x0 with noise
                sample = scheduler.step(x0, int(t), sample, eta=float(eta),
                                        generator=generator if eta > 0 else None).prev_sample
        return x0


__all__ = ["DEFAULT_BETA_END", "DEFAULT_BETA_START", "LatentDiffusion"]
