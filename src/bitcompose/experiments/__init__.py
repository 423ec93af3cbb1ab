"""The experiment harness: the one model cache (:mod:`~bitcompose.experiments.cache`), the one runner of
experiments (:mod:`~bitcompose.experiments.runner`: cells, resumption, meta, JSON and page), and what the
experiments share on top of the image application: the recipe of their small image models
(:mod:`~bitcompose.experiments.image_models`) and the evaluation classifier (:mod:`~bitcompose.experiments.classifier`).

Layers: ``core``/``diffusion``/``compose`` → ``images`` (an application: train, load, sample, evaluate an image
model) → ``experiments`` → the experiments (``objects``, ``guidance``, ``study``); ``cache`` and ``runner`` import
no application."""
