"""The image application: class-conditional Bit Diffusion on categorical pixels (configs and presets, the trainer,
loading a run, generation and evaluation, the demo, the evaluation classifier, the class-composition experiment)."""
