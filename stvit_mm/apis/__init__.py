# Copyright (c) stvit_mm authors. Licensed under the Apache License 2.0.
"""Entry-point logic for tools/: training/testing launch (launch.py), the
model index (model_index.py), single-image inference (inference.py,
imported on demand: it imports the toolbox of the config) and ONNX export
(onnx_export.py, imported on demand: it needs onnxruntime only to verify)."""
from .launch import (apply_train_options, build_runner, check_load_from,
                     init_cpu_process_group, load_config, setup_launcher)
from .model_index import WeightsNotHostedError, load_index

__all__ = ['WeightsNotHostedError', 'apply_train_options', 'build_runner',
           'check_load_from', 'init_cpu_process_group', 'load_config',
           'load_index', 'setup_launcher']
