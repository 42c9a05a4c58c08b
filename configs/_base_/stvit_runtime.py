"""Runtime settings every STViT config shares.

- ``PlainParamGroupsHook`` (stvit_mm): hands the optimizer plain-dict
  parameter groups, so that mmengine's ``compile`` option (torch.compile of
  ``train_step``, which reaches ``optimizer.step()``) traces; it changes no
  value. Switch compiling on with ``--cfg-options compile=True`` or e.g.
  ``compile=dict(backend='inductor')`` in a config.
"""
custom_hooks = [dict(type='PlainParamGroupsHook')]
