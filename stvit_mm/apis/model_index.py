# Copyright (c) stvit_mm authors. Licensed under the Apache License 2.0.
"""The model index (OpenMMLab ``model-index.yml`` + ``metafile.yml``) and its
registration with mmpretrain, so that classifiers are found by name:

    import stvit_mm
    from mmpretrain import get_model, inference_model, list_models
    list_models('*stvit*')                  # ['stvit_b_in1k', ...]
    model = get_model('stvit_s_in1k', pretrained='checkpoints/stvit_s_in1k_mm.pth')
    inference_model(model, 'demo.jpg')

No weights are hosted: an entry's ``Weights`` is ``stvit-mm://NAME``, which
this module registers as an mmengine checkpoint scheme that raises
:class:`WeightsNotHostedError`, saying where the official file is and how to
convert it (``pretrained=True`` would otherwise build a randomly initialised
model with only a warning).

The index and the configs live at the repository root in a source checkout
or an editable install, and under ``stvit_mm/.mim/`` in a regular install
(setup.py copies them there), as in the OpenMMLab packages.
"""
import os.path as osp
from typing import Dict

WEIGHTS_SCHEME = 'stvit-mm://'
CLASSIFICATION_METAFILE = osp.join('configs', 'classification',
                                   'metafile.yml')
_PACKAGE_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))
_registered = False


class WeightsNotHostedError(FileNotFoundError):
    """``pretrained=True`` asked for weights that this project does not
    host."""


def index_root() -> str:
    """The directory holding ``model-index.yml`` and ``configs/``.

    Raises:
        FileNotFoundError: neither a regular install's ``stvit_mm/.mim`` nor
            a source checkout has them.
    """
    candidates = (osp.join(_PACKAGE_DIR, '.mim'), osp.dirname(_PACKAGE_DIR))
    for root in candidates:
        if osp.isfile(osp.join(root, 'model-index.yml')):
            return root
    raise FileNotFoundError(
        f'stvit_mm model-index.yml not found in {" or ".join(candidates)}: '
        'reinstall stvit_mm (pip install . or pip install -e .)')


def load_index() -> Dict[str, dict]:
    """Every model entry of the index (all three tasks), by name, as raw
    metafile dicts (read with PyYAML, no network)."""
    import yaml
    root = index_root()
    with open(osp.join(root, 'model-index.yml')) as f:
        index = yaml.safe_load(f)
    models = {}
    for metafile in index['Import']:
        with open(osp.join(root, metafile)) as f:
            for entry in yaml.safe_load(f)['Models']:
                models[entry['Name']] = entry
    return models


def load_not_hosted(filename: str, map_location=None):
    """mmengine CheckpointLoader backend for ``stvit-mm://NAME``: there is
    nothing to download, so say where the official weights are."""
    name = filename[len(WEIGHTS_SCHEME):]
    entry = load_index().get(name)
    if entry is None:
        raise WeightsNotHostedError(
            f'{filename}: no model named {name!r} in the stvit_mm model '
            'index (mmpretrain.list_models("*stvit*") lists them)')
    source = entry['Converted From']
    converted = f'checkpoints/{name}_mm.pth'
    raise WeightsNotHostedError(
        f'No weights are hosted for {name}, so pretrained=True has nothing '
        f'to load. The official ImageNet-1K file {source["File"]} is at '
        f'{source["Weights"]} (from {source["Code"]}). Download it, convert '
        'it with\n    python tools/model_converters/official_to_mm.py '
        f'{source["File"]} {converted}\nand pass the result: '
        f'get_model({name!r}, pretrained={converted!r}).')


def register_weights_scheme() -> None:
    """Let mmengine's CheckpointLoader resolve ``stvit-mm://`` (idempotent)."""
    from mmengine.runner.checkpoint import CheckpointLoader
    CheckpointLoader.register_scheme(WEIGHTS_SCHEME, load_not_hosted,
                                     force=True)


def register_model_index() -> bool:
    """Add the classifiers to mmpretrain's ModelHub (once per process).

    Only the classification metafile: mmpretrain's ``get_model`` builds
    every model it lists in the mmpretrain scope, where a detector or a
    segmentor would not build. Detection and segmentation entries are in
    the top-level model-index.yml for ``mim`` and for readers.

    Returns:
        bool: False when mmpretrain is not installed (nothing to register).
    """
    global _registered
    if _registered:
        return True
    try:
        from mmpretrain.apis import ModelHub
    except ImportError:
        return False
    root = index_root()
    # config paths in the metafile are relative to the root, as in
    # mmpretrain's own index
    ModelHub.register_model_index(osp.join(root, CLASSIFICATION_METAFILE),
                                  config_prefix=root)
    _registered = True
    return True
