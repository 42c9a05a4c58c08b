# Copyright (c) stvit_mm authors. Licensed under the Apache License 2.0.
"""Deployment through mmdeploy 1.3.1 (ONNX Runtime), with the torch
compatibility fixes it needs (compat.py), the rewriters that keep mmdet's
and mmseg's semantics in the graph (rewriters.py), the one-call
convert-and-compare (pipeline.py) and the TensorRT-readiness check
(tensorrt.py). Importing this package needs no mmdeploy; using it does
(``tools/install.sh --deploy``)."""
from .compat import (INSTALL_HINT, MMDEPLOY_VERSION, MMDeployMissingError,
                     mmdeploy_compat, require_mmdeploy)

__all__ = ['INSTALL_HINT', 'MMDEPLOY_VERSION', 'MMDeployMissingError',
           'mmdeploy_compat', 'require_mmdeploy']
