# Copyright (c) stvit_mm authors. Licensed under the Apache License 2.0.
"""Parameter and FLOP counting for any config of this repository.

Counting follows fvcore / mmengine.analysis, the convention of the paper:
one multiply-add is one "flop"; convolutions, matmuls, linear layers and
norms are counted, elementwise ops (add, GELU, softmax, ...) are not.

mmengine's :class:`~mmengine.analysis.FlopAnalyzer` has no handle for
``aten::scaled_dot_product_attention``, which the fast Super Token Attention
uses for its self-attention, so that op would silently count as zero (about
0.25G of STViT-S's 4.4G at 224, most of the backbone at detection sizes
where stage 3 attends globally). :data:`EXTRA_FLOP_HANDLES` adds it as the
two matmuls it stands for.
"""
import copy
import importlib
import inspect
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.analysis import FlopAnalyzer, parameter_count
from mmengine.analysis.jit_handles import get_shape
from mmengine.config import Config
from mmengine.registry import init_default_scope

# default_scope of a config -> the default input (H, W) of that task, the
# sizes at which the paper reports FLOPs (detection "1280x800" is W x H;
# transposing the input gives the same count).
TOOLBOXES = ('mmpretrain', 'mmdet', 'mmseg')
DEFAULT_SHAPES = {'mmpretrain': (224, 224), 'mmdet': (800, 1280),
                  'mmseg': (512, 2048)}


def _prod(values: Sequence[int]) -> int:
    out = 1
    for v in values:
        out *= int(v)
    return out


def sdpa_flop_jit(inputs: List, outputs: List) -> int:
    """FLOPs (multiply-adds) of ``aten::scaled_dot_product_attention``.

    q (..., Nq, d), k (..., Nk, d), v (..., Nk, dv): the two matmuls
    q @ k^T and attn @ v, i.e. prod(...) * Nq * Nk * (d + dv). The scaling,
    softmax and mask are elementwise and not counted, as for a plain matmul.
    """
    q_shape, k_shape, v_shape = (get_shape(v) for v in inputs[:3])
    if q_shape is None or k_shape is None or v_shape is None:
        raise ValueError('scaled_dot_product_attention with unknown input '
                         'shapes cannot be counted')
    batch_heads = _prod(q_shape[:-2])  # the broadcast batch of q
    num_q, dim = q_shape[-2], q_shape[-1]
    num_k, dim_v = k_shape[-2], v_shape[-1]
    return batch_heads * num_q * num_k * (dim + dim_v)


EXTRA_FLOP_HANDLES = {
    'aten::scaled_dot_product_attention': sdpa_flop_jit,
}


@dataclass
class FlopsReport:
    """Result of :func:`count_flops`.

    Attributes:
        flops (int): total multiply-adds of one forward pass.
        params (int): parameters of the analysed model.
        by_module (dict): flops per top-level child module (backbone, neck,
            heads, ...).
        by_operator (Counter): flops per counted operator kind.
        uncounted (Counter): op name -> number of calls for every op that
            was traced but not counted (elementwise ops by convention, and
            any op with no handle).
        input_shape (tuple): (B, C, H, W) of the tensor fed to the model.
        toolbox (str): the config's default_scope, '' for a bare module.
        protocol (str): how the model was run, '' for a bare module.
    """
    flops: int
    params: int
    by_module: Dict[str, int] = field(default_factory=dict)
    by_operator: Counter = field(default_factory=Counter)
    uncounted: Counter = field(default_factory=Counter)
    input_shape: Tuple[int, ...] = ()
    toolbox: str = ''
    protocol: str = ''


class _TensorMode(nn.Module):
    """Calls an OpenMMLab model in ``mode='tensor'`` with fixed data samples,
    so that the jit tracer behind FlopAnalyzer sees a plain tensor forward."""

    def __init__(self, model: nn.Module, data_samples):
        super().__init__()
        self.model = model
        self.data_samples = data_samples

    def forward(self, inputs: torch.Tensor):
        return self.model(inputs, self.data_samples, mode='tensor')


class _QueryHeadTensorMode(_TensorMode):
    """mmseg's ``mode='tensor'`` for a segmentor whose decode head needs the
    data samples (Mask2Former, MaskFormer: the image size of their masks).
    mmseg calls ``decode_head.forward(x)`` without them and fails; this runs
    the same backbone, neck and head with them."""

    def forward(self, inputs: torch.Tensor):
        features = self.model.extract_feat(inputs)
        return self.model.decode_head(features, self.data_samples)


class _TwoStageDummy(nn.Module):
    """A two-stage detector counted the way mmdet 2.x's ``forward_dummy`` did,
    the protocol behind the FLOPs of Swin-era papers, STViT's included.

    Backbone, neck and the RPN head's convolutions, then every RoI (bbox)
    head on ``num_proposals`` fixed boxes and every mask head on the first
    ``num_mask_rois`` of them. mmdet 3's ``mode='tensor'`` differs in two
    ways: its proposals come out of NMS on the random weights (so the count
    changes from one build to the next) and its cascade runs all three mask
    heads on all proposals (about 1.5x the paper's Cascade Mask R-CNN count).

    Args:
        model: an mmdet TwoStageDetector (StandardRoIHead or CascadeRoIHead).
        image_size: (H, W) of the padded input, where the boxes are drawn.
    """

    def __init__(self, model: nn.Module, image_size: Tuple[int, int],
                 num_proposals: int = 1000, num_mask_rois: int = 100):
        super().__init__()
        self.model = model
        self.num_mask_rois = num_mask_rois
        generator = torch.Generator().manual_seed(0)
        height, width = image_size
        # random boxes inside the image: (x1, y1, x2, y2) in pixels
        corners = torch.rand(num_proposals, 2, 2, generator=generator)
        corners = corners.sort(dim=1).values * torch.tensor(
            [float(width), float(height)])
        boxes = corners.reshape(num_proposals, 4)
        # bbox2roi layout: (batch index, x1, y1, x2, y2)
        self.register_buffer(
            'rois', torch.cat([boxes.new_zeros(num_proposals, 1), boxes], 1),
            persistent=False)

    def forward(self, inputs: torch.Tensor) -> tuple:
        model = self.model
        feats = model.extract_feat(inputs)
        outs = tuple(model.rpn_head(feats))
        roi_head = model.roi_head
        rois, mask_rois = self.rois, self.rois[:self.num_mask_rois]
        cascade = hasattr(roi_head, 'num_stages')
        stages = range(roi_head.num_stages) if cascade else [None]
        for stage in stages:
            args = (feats, rois) if stage is None else (stage, feats, rois)
            result = roi_head._bbox_forward(*args)
            outs += (result['cls_score'], result['bbox_pred'])
        if roi_head.with_mask:
            for stage in stages:
                args = (feats, mask_rois) if stage is None else \
                    (stage, feats, mask_rois)
                outs += (roi_head._mask_forward(*args)['mask_preds'], )
        return outs


def count_flops(model: nn.Module, inputs: Tuple[torch.Tensor, ...],
                wrapper: Optional[nn.Module] = None) -> FlopsReport:
    """Count flops and parameters of ``model(*inputs)``.

    Args:
        model: any module; put it in eval mode first if that matters.
        inputs: positional inputs, e.g. ``(torch.randn(1, 3, 224, 224),)``.
        wrapper: a module holding ``model`` as its ``model`` attribute whose
            forward is traced instead (how an OpenMMLab model is called).

    Returns:
        FlopsReport: ``toolbox`` is left empty.
    """
    if not isinstance(inputs, tuple):
        raise TypeError(f'inputs must be a tuple, got {type(inputs).__name__}')
    if wrapper is not None and getattr(wrapper, 'model', None) is not model:
        raise ValueError('wrapper.model must be the model being counted')
    traced = model if wrapper is None else wrapper
    analyzer = FlopAnalyzer(traced, inputs)
    analyzer.set_op_handle(**EXTRA_FLOP_HANDLES)
    # the table below reports them; mmengine would also log them as warnings
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    prefix = '' if wrapper is None else 'model.'
    by_module = {}
    for name, child in model.named_children():
        if name != 'data_preprocessor':  # normalisation, outside the net
            by_module[name] = analyzer.total(prefix + name)
    return FlopsReport(
        flops=int(analyzer.total()),
        params=int(parameter_count(model)['']),
        by_module=by_module,
        by_operator=Counter(analyzer.by_operator()),
        uncounted=Counter(analyzer.unsupported_ops()),
        input_shape=tuple(inputs[0].shape))


def toolbox_of(cfg: Config) -> str:
    """The OpenMMLab toolbox of a config, from its ``default_scope``."""
    scope = cfg.get('default_scope')
    if scope not in TOOLBOXES:
        raise ValueError(f'config default_scope is {scope!r}; get_flops '
                         f'supports {TOOLBOXES}')
    return scope


def build_model_from_config(cfg: Config) -> Tuple[nn.Module, str]:
    """Build the model of a config in its toolbox, without any checkpoint.

    The backbone's ``init_cfg`` is cleared and ``init_weights`` is not called,
    so configs pointing at pretrained files build on machines without them.

    Returns:
        tuple: (model in eval mode, toolbox name).
    """
    import stvit_mm  # noqa: F401  (registers STViT for custom_imports)
    toolbox = toolbox_of(cfg)
    init_default_scope(toolbox)
    registry = importlib.import_module(f'{toolbox}.registry').MODELS
    model_cfg = copy.deepcopy(cfg.model)
    if 'backbone' in model_cfg:
        model_cfg['backbone']['init_cfg'] = None
    model_cfg.pop('pretrained', None)
    model = registry.build(model_cfg)
    return model.eval(), toolbox


def default_shape(cfg: Config, toolbox: str) -> Tuple[int, int]:
    """(H, W) at which the paper reports this task's FLOPs; a classifier uses
    the crop size of its test pipeline (e.g. 384 for the fine-tuned configs).
    """
    if toolbox == 'mmpretrain':
        for step in cfg.get('test_pipeline', []) or []:
            if step.get('type') == 'CenterCrop':
                size = step['crop_size']
                return (size, size) if isinstance(size, int) else \
                    (size[1], size[0])  # mmpretrain crop_size is (w, h)
    return DEFAULT_SHAPES[toolbox]


def _dummy_batch(model: nn.Module, toolbox: str, shape: Tuple[int, int]):
    """One random uint8 image of ``shape`` (H, W) through the model's data
    preprocessor (normalisation, size-divisor padding) in test mode.

    Returns:
        tuple: (inputs (1, 3, H', W'), data_samples or None).
    """
    height, width = shape
    generator = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8,
                          generator=generator)
    meta = dict(img_shape=(height, width), ori_shape=(height, width),
                pad_shape=(height, width), scale_factor=(1., 1.))
    if toolbox == 'mmdet':
        from mmdet.structures import DetDataSample
        samples = [DetDataSample(metainfo=meta)]
    elif toolbox == 'mmseg':
        from mmseg.structures import SegDataSample
        samples = [SegDataSample(metainfo=meta)]
    else:
        samples = None
    data = model.data_preprocessor(dict(inputs=[image], data_samples=samples),
                                   training=False)
    return data['inputs'], data['data_samples']


PROTOCOLS = ('paper', 'tensor')


def get_flops(config: Union[str, Config],
              shape: Optional[Tuple[int, int]] = None,
              cfg_options: Optional[dict] = None,
              protocol: str = 'paper') -> FlopsReport:
    """Params and FLOPs of a config's model: backbone, neck and heads, no
    post-processing.

    Args:
        config: config path or loaded Config.
        shape: input (H, W); defaults to :func:`default_shape`.
        cfg_options: overrides merged into the config.
        protocol: how a two-stage detector is run (classifiers and
            segmentors always run ``mode='tensor'``, which is the paper's
            protocol for them): 'paper' = 1000 fixed proposals and 100 mask
            RoIs per mask head (see :class:`_TwoStageDummy`), 'tensor' =
            mmdet 3's ``mode='tensor'`` with NMS proposals of the random
            weights.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f'protocol must be one of {PROTOCOLS}, got '
                         f'{protocol!r}')
    if shape is not None and (len(shape) != 2 or not all(
            isinstance(v, int) and v > 0 for v in shape)):
        raise ValueError(f'shape must be two positive ints (H, W), got '
                         f'{shape}')
    cfg = Config.fromfile(config) if isinstance(config, str) else config
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    # Seeded random weights: mode='tensor' detector proposals (NMS on the
    # RPN's scores) then repeat from run to run; the caller's RNG is kept.
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(0)
        model, toolbox = build_model_from_config(cfg)
        if shape is None:
            shape = default_shape(cfg, toolbox)
        inputs, samples = _dummy_batch(model, toolbox, tuple(shape))
        two_stage = getattr(model, 'rpn_head', None) is not None and \
            getattr(model, 'roi_head', None) is not None
        if protocol == 'paper' and two_stage:
            wrapper = _TwoStageDummy(model, tuple(inputs.shape[-2:]))
        elif toolbox == 'mmseg' and 'batch_data_samples' in \
                inspect.signature(model.decode_head.forward).parameters:
            wrapper = _QueryHeadTensorMode(model, samples)
        else:
            wrapper = _TensorMode(model, samples)
        report = count_flops(model, (inputs, ), wrapper)
    report.toolbox = toolbox
    report.protocol = 'mmdet 2.x dummy forward (1000 proposals, 100 mask ' \
        'RoIs)' if isinstance(wrapper, _TwoStageDummy) else "mode='tensor'"
    return report


def format_report(report: FlopsReport) -> str:
    """Human-readable summary: params, FLOPs, per-module FLOPs and the table
    of ops that were traced but not counted."""
    lines = [f'Toolbox: {report.toolbox or "-"}',
             f'Protocol: {report.protocol or "-"}',
             f'Input shape: {tuple(report.input_shape)}',
             f'Params: {report.params / 1e6:.2f} M',
             f'FLOPs: {report.flops / 1e9:.2f} G',
             '', 'FLOPs by module:']
    for name, flops in report.by_module.items():
        lines.append(f'  {name:<24} {flops / 1e9:10.3f} G')
    lines += ['', 'Ops not counted (elementwise by convention, or no '
              'handle):']
    if report.uncounted:
        width = max(len(name) for name in report.uncounted)
        lines.append(f'  {"op":<{width}}  calls')
        for name, calls in report.uncounted.most_common():
            lines.append(f'  {name:<{width}}  {calls}')
    else:
        lines.append('  (none)')
    return '\n'.join(lines)
