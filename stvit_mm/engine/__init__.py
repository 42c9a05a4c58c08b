from .hooks import PlainParamGroupsHook
from .layer_decay import STViTLayerDecayOptimWrapperConstructor
from .optim_wrapper import AutoAmpOptimWrapper

__all__ = ['AutoAmpOptimWrapper', 'PlainParamGroupsHook',
           'STViTLayerDecayOptimWrapperConstructor']
