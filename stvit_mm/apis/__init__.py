# Copyright (c) stvit_mm authors. Licensed under the Apache License 2.0.
"""Entry-point logic for tools/: training/testing launch (launch.py) and
ONNX export (onnx_export.py, imported on demand: it needs onnxruntime only
to verify)."""
from .launch import (apply_train_options, build_runner, check_load_from,
                     init_cpu_process_group, load_config, setup_launcher)

__all__ = ['apply_train_options', 'build_runner', 'check_load_from',
           'init_cpu_process_group', 'load_config', 'setup_launcher']
