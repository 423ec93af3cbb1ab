"""Evaluation: Fréchet / kernel distances over any features, classifier-based image scores, caption metrics."""

from __future__ import annotations

from bitcompose.metrics.fid import (
    feature_statistics,
    frechet_distance,
    frechet_distance_from_stats,
    kernel_inception_distance,
)
from bitcompose.metrics.image_scores import class_accuracy, classifier_fid, classifier_kid, fid_floor
from bitcompose.metrics.inception import InceptionFeatures, find_inception_weights, inception_fid

__all__ = [
    "InceptionFeatures",
    "class_accuracy",
    "classifier_fid",
    "classifier_kid",
    "feature_statistics",
    "fid_floor",
    "find_inception_weights",
    "frechet_distance",
    "frechet_distance_from_stats",
    "inception_fid",
    "kernel_inception_distance",
]
