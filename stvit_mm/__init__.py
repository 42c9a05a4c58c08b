# Copyright (c) stvit_mm authors. Licensed under the Apache License 2.0.
"""STViT (Super Token Attention) for mmpretrain, mmdet and mmseg.

``custom_imports=dict(imports=['stvit_mm'])`` registers ``STViT`` and
``STViTClsNeck`` in mmengine's root MODELS registry and
``AutoAmpOptimWrapper`` in its OPTIM_WRAPPERS and
``STViTLayerDecayOptimWrapperConstructor`` (layer-wise lr decay for
detectors and segmentors) in its OPTIM_WRAPPER_CONSTRUCTORS, which the
registries of all three toolboxes fall back to, lets torch's weights-only
loader read mmengine and official STViT checkpoints (see
utils/safe_globals.py), and makes mmengine's loader of local checkpoint
files name the file and the problem when one cannot be read (see
utils/checkpoint_file.py). Where mmpretrain is installed, the classifiers
of the model index join its ModelHub, so
``mmpretrain.get_model('stvit_s_in1k')`` works by name (see
apis/model_index.py). Where timm >= 1.0 is installed, ``stvit_small``,
``stvit_base`` and ``stvit_large`` join timm's registry (see timm.py).
"""
from .apis.model_index import register_model_index, register_weights_scheme
from .utils.checkpoint_file import register_checked_local_loader
from .utils.safe_globals import register_safe_globals

register_safe_globals()
register_checked_local_loader()
register_weights_scheme()

from .engine import (AutoAmpOptimWrapper,  # noqa: E402
                     STViTLayerDecayOptimWrapperConstructor)
from .models import STViT, STViTClsNeck  # noqa: E402

register_model_index()


def _register_timm_models() -> None:
    """Import stvit_mm.timm (registering the timm models) when timm is
    installed; a broken or too old timm warns instead of breaking the mm
    entry points."""
    import importlib.util
    if importlib.util.find_spec('timm') is None:
        return
    try:
        from . import timm  # noqa: F401
    except Exception as error:  # noqa: BLE001
        import warnings
        warnings.warn(f'timm is installed, but the STViT timm models were '
                      f'not registered: {error}')


_register_timm_models()

__version__ = '0.1.0'
__all__ = ['AutoAmpOptimWrapper', 'STViT', 'STViTClsNeck',
           'STViTLayerDecayOptimWrapperConstructor', '__version__']
