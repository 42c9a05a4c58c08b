# Copyright (c) stvit_mm authors. Licensed under the Apache License 2.0.
"""Let ``torch.load(weights_only=True)`` read the checkpoints this project
meets, without switching the safety off.

Since torch 2.6 ``torch.load`` defaults to ``weights_only=True``, and mmengine
0.10.7 (which calls it without that argument) can no longer resume from or
test with its own checkpoints. Instead of ``weights_only=False`` we allow-list
exactly the types those files hold:

* mmengine checkpoints: numpy arrays, dtypes and scalars in ``meta`` and
  ``message_hub``; ``HistoryBuffer`` objects in the message hub.
* official STViT (DeiT-style) checkpoints: the ``argparse.Namespace`` in
  ``'args'``.

A HistoryBuffer pickles its statistics methods as ``getattr(HistoryBuffer,
'mean')`` (protocol 2 cannot name a class attribute directly), so the pickle
asks for ``builtins.getattr``. Allowing ``getattr`` itself would let a crafted
file reach any attribute of any allowed type; we map that name to
:func:`history_buffer_getattr`, which resolves only registered HistoryBuffer
statistics methods and refuses everything else.
"""
import argparse

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer


# Built-in statistics; custom ones join HistoryBuffer._statistics_methods when
# registered with HistoryBuffer.register_statistics.
_DEFAULT_STATISTICS = ('min', 'max', 'current', 'mean')


def history_buffer_getattr(owner, name: str):
    """``getattr`` restricted to the statistics methods of HistoryBuffer."""
    if owner is HistoryBuffer and (name in _DEFAULT_STATISTICS or
                                   name in HistoryBuffer._statistics_methods):
        return getattr(owner, name)
    raise torch.serialization.pickle.UnpicklingError(
        f'stvit_mm safe loading refused getattr({owner!r}, {name!r}): only '
        'HistoryBuffer statistics methods may be resolved from a checkpoint')


def _numpy_globals() -> list:
    # numpy 2 moved numpy.core to numpy._core; files written by either name it.
    from numpy._core import multiarray
    allowed = [multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype]
    # dtype objects are pickled through their per-type classes in numpy >= 1.25
    allowed += [type(np.dtype(code)) for code in '?bBhHiIlLqQefdgFDGOUSV']
    legacy = []
    for obj in (multiarray._reconstruct, multiarray.scalar):
        legacy.append((obj, f'numpy.core.multiarray.{obj.__name__}'))
    return allowed + legacy


def register_safe_globals() -> None:
    """Add the allow-list to torch's weights-only unpickler (idempotent)."""
    torch.serialization.add_safe_globals(
        _numpy_globals() + [
            HistoryBuffer,
            argparse.Namespace,
            (history_buffer_getattr, 'builtins.getattr'),
            (history_buffer_getattr, '__builtin__.getattr'),
        ])
