# Copyright (c) stvit_mm authors. Licensed under the Apache License 2.0.
"""What mmdeploy 1.3.1 needs from a torch newer than the ones it was written
for (torch <= 2.1), applied only while mmdeploy is in use.

Each fix names the torch change that made it necessary and is undone when
the context exits, so importing ``stvit_mm`` changes nothing in torch:

1. ``torch.onnx.export`` defaults to ``dynamo=True`` since torch 2.9, the
   exporter that needs ``onnxscript`` and knows nothing of mmdeploy's
   rewriters (which patch functions and symbolics of the TorchScript
   exporter). mmdeploy calls it without ``dynamo``: inside the context a
   call that does not choose gets ``dynamo=False``.
2. ``torch.onnx.symbolic_opset9._cast_Long`` is gone (the deprecated
   ``aten::_cast_*`` ops and their symbolics were removed by
   pytorch/pytorch#164641, in torch 2.10). mmdeploy's RoIAlign symbolic
   for ONNX Runtime imports it to cast the box batch indices to int64;
   inside the context the module has a function that makes that ``Cast``.

And one for mmdeploy's speed, not its correctness:

3. Every rewritten function asks mmdeploy's rewriter context for its
   caller with ``inspect.stack()``, which reads the source file of every
   frame on the stack: 0.16 s per call, 90 s for three Mask R-CNN images
   run through the rewritten PyTorch model. ``sys._getframe`` finds the
   same frame without reading any file.

mmdeploy itself is not edited: the fixes live here, keyed by the mmdeploy
release they were checked with.
"""
import contextlib
import functools
import importlib.metadata
import sys
from typing import Iterator, List

import torch

#: the mmdeploy release these fixes were written for and tested with
MMDEPLOY_VERSION = '1.3.1'
INSTALL_HINT = 'bash tools/install.sh --deploy'


class MMDeployMissingError(ImportError):
    """mmdeploy (or its ONNX Runtime) is not installed."""


def require_mmdeploy() -> str:
    """The installed mmdeploy's version; a clear error when it is missing or
    is not the release the compatibility fixes were written for."""
    try:
        version = importlib.metadata.version('mmdeploy')
        importlib.metadata.version('onnxruntime')
    except importlib.metadata.PackageNotFoundError as error:
        raise MMDeployMissingError(
            f'{error.name} is not installed: deployment needs mmdeploy '
            f'{MMDEPLOY_VERSION} and onnxruntime; run `{INSTALL_HINT}`'
        ) from None
    if version.split('.')[:2] != MMDEPLOY_VERSION.split('.')[:2]:
        raise MMDeployMissingError(
            f'mmdeploy {version} is installed; stvit_mm.deploy is written '
            f'for mmdeploy {MMDEPLOY_VERSION} (run `{INSTALL_HINT}`)')
    return version


def _export_torchscript_by_default(export):
    """``torch.onnx.export`` with ``dynamo=False`` unless the caller says."""

    @functools.wraps(export)
    def wrapper(*args, **kwargs):
        kwargs.setdefault('dynamo', False)
        return export(*args, **kwargs)

    wrapper.__stvit_mm_compat__ = True
    return wrapper


def _cast_long(g, input, non_blocking):
    """The symbolic of the removed ``aten::_cast_Long``: a Cast to int64."""
    return g.op('Cast', input, to_i=torch.onnx.TensorProtoDataType.INT64)


def _frame_func(top: int = 1):
    """mmdeploy's ``get_frame_func``: the function of the frame ``top``
    levels up (0: this one), as ``inspect.stack()[top]`` names it."""
    frame = sys._getframe(top)
    name = frame.f_code.co_name
    assert name in frame.f_globals, \
        f'Can not find function: {name} in global.'
    return frame.f_globals[name]


# where mmdeploy looks up get_frame_func by its module-level name
_FRAME_FUNC_USERS = ('mmdeploy.core.rewriters.rewriter_utils',
                     'mmdeploy.core.rewriters.function_rewriter',
                     'mmdeploy.core.rewriters.symbolic_rewriter')


@contextlib.contextmanager
def mmdeploy_compat() -> Iterator[List[str]]:
    """Apply the fixes this torch needs while the block runs; yields the
    names of those applied (empty on a torch that needs none)."""
    from torch.onnx import symbolic_opset9
    applied = []
    export = torch.onnx.export
    patch_export = not getattr(export, '__stvit_mm_compat__', False)
    add_cast = not hasattr(symbolic_opset9, '_cast_Long')
    if patch_export:
        torch.onnx.export = _export_torchscript_by_default(export)
        applied.append('torch.onnx.export(dynamo=False)')
    if add_cast:
        symbolic_opset9._cast_Long = _cast_long
        applied.append('symbolic_opset9._cast_Long')
    frame_funcs = {}
    for name in _FRAME_FUNC_USERS:
        module = importlib.import_module(name)
        if module.get_frame_func is not _frame_func:
            frame_funcs[module] = module.get_frame_func
            module.get_frame_func = _frame_func
    if frame_funcs:
        applied.append('get_frame_func(sys._getframe)')
    try:
        yield applied
    finally:
        if patch_export:
            torch.onnx.export = export
        if add_cast:
            del symbolic_opset9._cast_Long
        for module, original in frame_funcs.items():
            module.get_frame_func = original
