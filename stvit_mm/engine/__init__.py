from .hooks import PlainParamGroupsHook
from .optim_wrapper import AutoAmpOptimWrapper

__all__ = ['AutoAmpOptimWrapper', 'PlainParamGroupsHook']
