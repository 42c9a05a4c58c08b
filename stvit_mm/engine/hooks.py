# Copyright (c) stvit_mm authors. Licensed under the Apache License 2.0.
"""Hooks for the toolboxes' runners."""
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class PlainParamGroupsHook(Hook):
    """Make the optimizer's parameter groups plain dicts before training.

    mmengine's optimizer constructor hands torch its parameter groups as
    ``ConfigDict`` (whenever ``paramwise_cfg`` is set, as in every STViT
    config). With mmengine's ``compile`` option, torch.compile traces
    ``train_step`` down into ``optimizer.step()``, and dynamo (torch 2.14)
    fails on dict subclasses there with an internal error
    (``'UserDefinedDictVariable' object has no attribute 'items'``). The
    groups are replaced in place by dicts with the same entries, so the
    learning-rate schedulers, checkpoints and resuming see the same values.
    """

    priority = 'VERY_HIGH'

    def before_train(self, runner) -> None:
        wrappers = runner.optim_wrapper
        # an OptimWrapperDict (several optimizers) maps names to wrappers
        wrappers = wrappers.values() if hasattr(wrappers, 'values') else \
            [wrappers]
        for wrapper in wrappers:
            groups = wrapper.optimizer.param_groups
            for i, group in enumerate(groups):
                if type(group) is not dict:
                    groups[i] = dict(group)
