"""The image application: class-conditional Bit Diffusion on categorical pixels (configs and presets, the trainer,
loading a run, generation and evaluation, the demo, the class-composition experiment). The experiments' model recipe
and the evaluation classifier live in :mod:`bitcompose.experiments`."""
