"""How annealed MCMC runs: :class:`MCMCOptions`, the one options object of
:func:`~bitcompose.compose.drivers.annealed_mcmc` (the time grid says which levels, the model what is sampled)."""

from __future__ import annotations

from dataclasses import dataclass, is_dataclass, replace

from bitcompose.compose.kernels import Kernel, StepSizeLike, make_kernel

__all__ = ["DRIVERS", "MCMCOptions"]

DRIVERS = ("anneal", "reverse")


@dataclass(frozen=True)
class MCMCOptions:
    """The settings of an annealed-MCMC run, each checked with a one-line ``ValueError``.

    Attributes:
        kernel: a kernel object (``ULA``, ``MALA``, ``UHMC``, ``HMC``) or its name (default options).
        steps_per_level: ``K`` kernel steps per level.
        step_size: if given, replaces the kernel's ``step_size`` (float, ``StepSize`` or callable).
        driver: ``"anneal"`` (from ``N(0, I)``, ``K`` kernel steps at every level) or ``"reverse"`` (an
            ancestral step down, then ``K`` kernel steps at the level it landed on).
        min_level: ``"reverse"`` only: MCMC at the levels ``≥ ⌊min_level·L⌋``, a fraction of the grid in
            ``[0, 1]`` (0: every level, 0.5: the noisier half; the levels below get only ancestral steps).
        carry_momentum: keep the U-HMC/HMC momentum across levels instead of redrawing it per level.
        resample_ess: ``None`` or a fraction in ``(0, 1]``: resample the particles by their annealed-importance
            weights whenever the effective sample size is below ``resample_ess·B`` (``driver="anneal"`` only;
            needs a model with energies).
        final_step: ``driver="anneal"``: end with the noise-free ancestral step from level 0 to the data (the
            x0 estimate; 1 extra evaluation). The ``"reverse"`` driver always ends on the data.
    """

    kernel: Kernel | str
    steps_per_level: int = 10
    step_size: StepSizeLike | None = None
    driver: str = "anneal"
    min_level: float = 0.0
    carry_momentum: bool = True
    resample_ess: float | None = None
    final_step: bool = False

    def __post_init__(self) -> None:
        if self.driver not in DRIVERS:
            raise ValueError(f"driver must be one of {DRIVERS}, got {self.driver!r}")
        k = self.steps_per_level
        if not isinstance(k, int) or isinstance(k, bool) or k < 0:
            raise ValueError(f"steps_per_level must be an integer >= 0, got {k!r}")
        if not 0.0 <= self.min_level <= 1.0:
            raise ValueError(f"min_level must be a fraction of the grid in [0, 1], got {self.min_level}")
        if self.resample_ess is not None:
            if not 0 < self.resample_ess <= 1:
                raise ValueError(f"resample_ess must lie in (0, 1], got {self.resample_ess}")
            if self.driver != "anneal":
                raise ValueError("resample_ess needs driver='anneal'")
        self.resolved_kernel()  # an unknown kernel name or a misplaced step_size is refused here

    def resolved_kernel(self) -> Kernel:
        """The kernel object: by name with its default options, with ``step_size`` put in when given."""
        kernel = make_kernel(self.kernel) if isinstance(self.kernel, str) else self.kernel
        if self.step_size is None:
            return kernel
        if not is_dataclass(kernel) or not hasattr(kernel, "step_size"):
            raise ValueError(f"step_size= needs a kernel with a step_size field, got {type(kernel).__name__}")
        return replace(kernel, step_size=self.step_size)  # type: ignore[type-var,no-any-return]
