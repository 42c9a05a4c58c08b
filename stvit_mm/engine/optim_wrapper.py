# Copyright (c) stvit_mm authors. Licensed under the Apache License 2.0.
"""Mixed precision where the hardware has it, fp32 elsewhere, from one config.

mmengine's AmpOptimWrapper refuses to build without CUDA/NPU/MLU/MUSA, so a
config that asks for it cannot run in a CPU process. The paper's recipes use
mixed precision on GPUs, and the same config files must also train on a CPU;
``AutoAmpOptimWrapper`` builds the one or the other.
"""
from mmengine.device import (is_cuda_available, is_mlu_available,
                             is_musa_available, is_npu_available)
from mmengine.logging import print_log
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS


def _amp_device_available() -> bool:
    return (is_cuda_available() or is_npu_available() or is_mlu_available()
            or is_musa_available())


@OPTIM_WRAPPERS.register_module()
def AutoAmpOptimWrapper(optimizer, loss_scale='dynamic', dtype=None,
                        use_fsdp=False, **optim_wrapper_args) -> OptimWrapper:
    """Build mmengine's ``AmpOptimWrapper`` on an accelerator, else a plain
    fp32 ``OptimWrapper`` (a warning says so).

    Args:
        optimizer: the built optimizer (passed by the optim constructor).
        loss_scale, dtype, use_fsdp: AmpOptimWrapper's own options, used
            only when mixed precision is available.
        **optim_wrapper_args: OptimWrapper options (accumulative_counts,
            clip_grad); unknown names raise TypeError from OptimWrapper.
    """
    if _amp_device_available():
        return AmpOptimWrapper(optimizer=optimizer, loss_scale=loss_scale,
                               dtype=dtype, use_fsdp=use_fsdp,
                               **optim_wrapper_args)
    print_log('AutoAmpOptimWrapper: no CUDA/NPU/MLU/MUSA device, training in '
              'fp32 without mixed precision', logger='current', level=30)
    return OptimWrapper(optimizer=optimizer, **optim_wrapper_args)
