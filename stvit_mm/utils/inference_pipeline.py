# Copyright (c) stvit_mm authors. Licensed under the Apache License 2.0.
"""The test dataloader's pipeline as the toolboxes' inference APIs need it:
mmdeploy and mmseg's ``inference_model`` read the config's top-level
``test_pipeline``, mmdet's ``inference_detector`` and mmpretrain's
inferencer the test dataloader's; both must be this one."""
import copy

from mmengine.config import Config


def find_test_dataset(cfg: Config):
    """The test dataloader's dataset that holds the pipeline (inside any
    RepeatDataset-style wrappers)."""
    dataset = cfg.test_dataloader.dataset
    while 'pipeline' not in dataset and 'dataset' in dataset:
        dataset = dataset.dataset
    return dataset


def inference_test_pipeline(cfg: Config) -> list:
    """A copy of the test dataloader's pipeline without annotation
    loading."""
    return [copy.deepcopy(step) for step in find_test_dataset(cfg).pipeline
            if 'LoadAnnotations' not in step['type']]
