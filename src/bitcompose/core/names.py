"""The names the library and the command line share (imports nothing): one spelling of each, so that a parser's
``choices`` and the code that dispatches on them cannot drift apart."""

from __future__ import annotations

__all__ = [
    "DIFFUSION_SAMPLERS",
    "BIT_PREDICTIONS",
    "ENERGIES",
    "ENERGY_FORMS",
    "MCMC_SAMPLERS",
    "OBJECTS_WEIGHT",
    "PARAMS",
    "PREDICTIONS",
    "SMALL_IMAGE_DATASETS",
    "STUDY_DATASETS",
    "STUDY_GRIDS",
]

#: Reverse samplers of Bit Diffusion models (``bitcompose.sample``): DDIM, DDPM, DPM-Solver++(2M).
DIFFUSION_SAMPLERS: tuple[str, ...] = ("ddim", "ddpm", "dpmpp2m")
#: Samplers of composed models: reverse diffusion, and annealed MCMC with each kernel.
MCMC_SAMPLERS: tuple[str, ...] = ("reverse", "ula", "mala", "uhmc", "hmc")
#: What a Bit Diffusion network predicts (``BitDenoiser(prediction=...)``).
BIT_PREDICTIONS: tuple[str, ...] = ("x0", "eps", "logistic", "energy")
#: An image model's ``model.prediction``: a Bit Diffusion parameterisation, or ``"masked"``, the absorbing-state
#: baseline (``bitcompose.diffusion.masked.MaskedDenoiser``).
PREDICTIONS: tuple[str, ...] = (*BIT_PREDICTIONS, "masked")
#: The energy's form of an energy-parameterised denoiser (``BitDenoiser(energy=...)``).
ENERGIES: tuple[str, ...] = ("x0", "diff", "norm")
#: What each energy form is, in words, for the results pages (``f`` the network output).
ENERGY_FORMS: dict[str, str] = {
    "x0": "‖x − α·f(x, t)‖²/(2σ) trained on the x0 MSE (the x0-form, docs/composition.md)",
    "diff": "‖f(x, t) − x‖² trained on the ε MSE",
    "norm": "½‖f(x, t)‖² trained on the ε MSE",
}
#: The objects experiment's conjunction weight w per condition by default (a number the CLI and the library share;
#: docs/composition.md says why this one).
OBJECTS_WEIGHT: float = 1.0
#: Parameterisations of the composition experiments' trained models: score (no energy) or energy.
PARAMS: tuple[str, ...] = ("score", "energy")
#: The small real image data sets of the experiments (14×14 MNIST / Fashion-MNIST, the 8×8 digits).
SMALL_IMAGE_DATASETS: tuple[str, ...] = ("mnist", "fashion_mnist", "digits")
#: The Bit Diffusion study's data sets: the small ones, and Fashion-MNIST at 28×28 and 256 levels with its official
#: 60,000 / 10,000 split.
STUDY_DATASETS: tuple[str, ...] = (*SMALL_IMAGE_DATASETS, "fashion_mnist_28")
#: The grids of the Bit Diffusion study.
STUDY_GRIDS: tuple[str, ...] = (
    "quick",
    "samplers",
    "encodings",
    "ablations",
    "baselines",
    "selfguidance",
    "full",
)
