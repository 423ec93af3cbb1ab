"""The experiment harness: the one model cache (:mod:`~bitcompose.experiments.cache`) and the one runner of
experiments (:mod:`~bitcompose.experiments.runner`: cells, resumption, meta, JSON and page)."""
