"""Evaluation: Fréchet / kernel distances over any features, the in-project image classifier and its scores."""

from __future__ import annotations

from bitcompose.metrics.fid import (
    feature_statistics,
    frechet_distance,
    frechet_distance_from_stats,
    kernel_inception_distance,
)
from bitcompose.metrics.image_scores import class_accuracy, classifier_fid, classifier_kid, fid_floor
from bitcompose.metrics.inception import InceptionFeatures, find_inception_weights, inception_fid
from bitcompose.nets.classifier import (
    ClassifierConfig,
    ImageClassifier,
    default_cache_dir,
    load_or_train_classifier,
    train_classifier,
)

__all__ = [
    "ClassifierConfig",
    "ImageClassifier",
    "InceptionFeatures",
    "class_accuracy",
    "classifier_fid",
    "classifier_kid",
    "default_cache_dir",
    "feature_statistics",
    "fid_floor",
    "find_inception_weights",
    "frechet_distance",
    "frechet_distance_from_stats",
    "inception_fid",
    "kernel_inception_distance",
    "load_or_train_classifier",
    "train_classifier",
]
