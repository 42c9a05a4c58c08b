# Copyright (c) stvit_mm authors. Licensed under the Apache License 2.0.
"""mmdeploy rewriters (ONNX Runtime backend) that keep the toolboxes'
semantics in the exported graph where mmdeploy's defaults change them, and
the segmentation backend model that post-processes as mmseg does.

Registered the way mmdeploy registers its own, for ``backend='onnxruntime'``
(which takes precedence over mmdeploy's ``default`` ones), when this module
is imported, i.e. only when ``stvit_mm.deploy`` is used:

- ``RPNHead.predict_by_feat``: mmdet's proposals. mmdeploy's default runs
  one NMS over the proposals of all levels with a 0.05 score threshold;
  mmdet runs NMS per level (``batched_nms`` with the level as the class)
  with no threshold, after dropping boxes of non-positive size.
- ``F.adaptive_avg_pool2d``: adaptive bins computed from the runtime size.
  mmdeploy's default turns it into an average pool whose kernel is fixed at
  export (off at every other size, and not even adaptive at the exported
  one when the size is not a multiple of the output), which breaks UperNet's
  pyramid pooling (1, 2, 3, 6 bins) for a dynamic-size graph.
- ``CascadeRoIHead.predict_bbox``: per-class box regression in the
  refining stages (mmdeploy's default asserts class-agnostic regression).
- backend model ``stvit_seg_logits``: mmseg resizes the logits to the
  original image (bilinear) and then takes the argmax; mmdeploy's model
  takes the argmax at the network's size and resizes the labels (nearest).

The STViT backbone itself needs no rewriter: while tracing, its Super Token
Attention pads and crops unconditionally and sums with padded copies, and
the fused CPU kernels step aside (see ``stvit_mm.models.super_token``).
"""
from typing import List, Optional

import torch
import torch.nn.functional as F
from mmdeploy.codebase.mmdet.deploy import gather_topk
from mmdeploy.codebase.mmseg.deploy.segmentation_model import (
    __BACKEND_MODEL as SEG_BACKEND_MODELS, End2EndModel as SegEnd2EndModel)
from mmdeploy.core import FUNCTION_REWRITER
from mmdeploy.mmcv.ops.nms import ONNXNMSop
from mmengine.structures import PixelData
from torch import Tensor
from torch.nn.modules.utils import _pair

BACKEND = 'onnxruntime'


# ------------------------------------------------------------- proposals
@FUNCTION_REWRITER.register_rewriter(
    func_name='mmdet.models.dense_heads.rpn_head.RPNHead.predict_by_feat',
    backend=BACKEND)
def rpn_head__predict_by_feat__per_level_nms(
        self, cls_scores: List[Tensor], bbox_preds: List[Tensor],
        score_factors=None, batch_img_metas: Optional[List[dict]] = None,
        cfg=None, rescale: bool = False, with_nms: bool = True, **kwargs):
    """mmdet's RPN post-processing for one image, as a graph.

    Args:
        cls_scores: per level (1, A, H_l, W_l) objectness logits.
        bbox_preds: per level (1, A * 4, H_l, W_l) box deltas.
        batch_img_metas: one dict whose ``img_shape`` (a traced size under
            mmdeploy's detector rewrite) clips the boxes.

    Returns:
        tuple: ``dets`` (1, K, 5): x1, y1, x2, y2, score sorted by score,
        K <= ``max_per_img``; ``labels`` (1, K) zeros.
    """
    cfg = self.test_cfg if cfg is None else cfg
    if cls_scores[0].shape[0] != 1:
        # a batch pads each image's proposals to one count; mmdet's
        # proposals per image have no such padding: exported at batch 1
        raise ValueError('the RPN rewrite exports one image per batch '
                         f'(got {cls_scores[0].shape[0]})')
    featmap_sizes = [score.shape[-2:] for score in cls_scores]
    mlvl_anchors = self.prior_generator.grid_priors(
        featmap_sizes, dtype=cls_scores[0].dtype,
        device=cls_scores[0].device)
    nms_pre = cfg.get('nms_pre', -1)
    boxes, scores, level_ids = [], [], []
    for level, (cls_score, bbox_pred, anchors) in enumerate(
            zip(cls_scores, bbox_preds, mlvl_anchors)):
        # (1, A, H, W) -> (1, H * W * A), mmdet's order of priors
        cls_score = cls_score.permute(0, 2, 3, 1).reshape(1, -1)
        level_scores = (cls_score.sigmoid() if self.use_sigmoid_cls else
                        cls_score.reshape(1, -1, 2).softmax(-1)[..., 0])
        deltas = bbox_pred.permute(0, 2, 3, 1).reshape(
            1, -1, self.bbox_coder.encode_size)
        anchors = anchors.unsqueeze(0)
        if nms_pre > 0:
            # mmdeploy's topk rewrite clamps k to the level's size
            _, keep = level_scores.topk(nms_pre)
            deltas, level_scores = gather_topk(
                deltas, level_scores.unsqueeze(-1), inds=keep,
                batch_size=1, is_batched=True)
            level_scores = level_scores.squeeze(-1)
            anchors = gather_topk(anchors, inds=keep, batch_size=1,
                                  is_batched=False)
        boxes.append(self.bbox_coder.decode(
            anchors, deltas, max_shape=batch_img_metas[0]['img_shape']))
        scores.append(level_scores)
        level_ids.append(torch.full_like(level_scores, level))
    boxes = torch.cat(boxes, dim=1)          # (1, N, 4)
    scores = torch.cat(scores, dim=1)        # (1, N)
    level_ids = torch.cat(level_ids, dim=1)  # (1, N)
    if not with_nms:
        return boxes, scores.unsqueeze(-1)

    if cfg.get('min_bbox_size', -1) >= 0:
        # mmdet drops them before NMS; here their score goes to 0, and the
        # NMS's score threshold 0 (strict) drops them
        size = cfg.min_bbox_size
        valid = ((boxes[..., 2] - boxes[..., 0]) > size) & (
            (boxes[..., 3] - boxes[..., 1]) > size)
        scores = torch.where(valid, scores, scores.new_zeros(()))
    # mmcv's batched_nms: levels apart by more than the largest coordinate,
    # so one NMS call never compares boxes of two levels
    offsets = level_ids * (boxes.max() + 1)
    keep = ONNXNMSop.apply(boxes + offsets.unsqueeze(-1),
                           scores.unsqueeze(1), cfg.max_per_img,
                           float(cfg.nms.iou_threshold), 0.0)[:, 2]
    kept_scores, order = scores[0, keep].sort(descending=True)
    dets = torch.cat([boxes[0, keep[order]], kept_scores.unsqueeze(-1)],
                     dim=-1).unsqueeze(0)
    return dets, dets.new_zeros(dets.shape[:2], dtype=torch.long)


# ----------------------------------------------------- adaptive pooling
def adaptive_pool_weights(size: Tensor, bins: int, dtype: torch.dtype,
                          device: torch.device) -> Tensor:
    """(bins, size) averaging matrix of adaptive pooling along one axis.

    Bin ``i`` averages ``[floor(i * size / bins), ceil((i + 1) * size /
    bins))``, as ``torch.nn.functional.adaptive_avg_pool2d`` does; ``size``
    is a 0-d int64 tensor, traced, so the graph recomputes the bins for
    every input size.
    """
    index = torch.arange(bins, device=device)
    start = torch.div(index * size, bins, rounding_mode='floor')
    end = torch.div((index + 1) * size + bins - 1, bins,
                    rounding_mode='floor')
    position = torch.arange(size, device=device)
    inside = (position.unsqueeze(0) >= start.unsqueeze(1)) & (
        position.unsqueeze(0) < end.unsqueeze(1))
    weights = inside.to(dtype)
    return weights / weights.sum(dim=1, keepdim=True)


@FUNCTION_REWRITER.register_rewriter(
    func_name='torch.nn.functional.adaptive_avg_pool2d', backend=BACKEND)
def adaptive_avg_pool2d__runtime_bins(input: Tensor, output_size) -> Tensor:
    """Adaptive average pooling of (B, C, H, W) to (B, C, *output_size) as
    two matrix products with bins from the runtime H and W."""
    ctx = FUNCTION_REWRITER.get_context()
    out_h, out_w = _pair(output_size)
    if out_h is None or out_w is None or (out_h == 1 and out_w == 1):
        return ctx.origin_func(input, output_size)
    shape = torch._shape_as_tensor(input)
    rows = adaptive_pool_weights(shape[2], out_h, input.dtype, input.device)
    cols = adaptive_pool_weights(shape[3], out_w, input.dtype, input.device)
    return torch.matmul(torch.matmul(rows, input), cols.transpose(0, 1))


# ------------------------------------------------- segmentation results
@SEG_BACKEND_MODELS.register_module('stvit_seg_logits')
class SegLogitsEnd2EndModel(SegEnd2EndModel):
    """mmdeploy's segmentation model for a graph that outputs logits
    (``with_argmax=False``): logits resized to the original image
    (bilinear, the decode head's ``align_corners``, given as
    ``codebase_config.align_corners``), then the argmax, as mmseg's
    ``postprocess_result`` does."""

    def pack_result(self, batch_outputs: Tensor, data_samples: list):
        """(B, num_classes, h, w) logits -> data samples with
        ``pred_sem_seg`` (1, H, W) and ``seg_logits`` at the image's size."""
        # mmdeploy hands the backend model no model config: the decode
        # head's align_corners comes in the codebase config (False, mmseg's
        # default, when absent)
        align_corners = self.deploy_cfg.codebase_config.get(
            'align_corners', False)
        for logits, data_sample in zip(batch_outputs, data_samples):
            height, width = data_sample.metainfo['img_shape'][:2]
            # the data preprocessor's bottom/right padding
            logits = logits[:, :height, :width].unsqueeze(0).float()
            if tuple(data_sample.metainfo['ori_shape'][:2]) != (height,
                                                                width):
                logits = F.interpolate(
                    logits, size=data_sample.metainfo['ori_shape'][:2],
                    mode='bilinear', align_corners=align_corners)
            logits = logits.squeeze(0)
            data_sample.set_data(dict(
                seg_logits=PixelData(data=logits),
                pred_sem_seg=PixelData(
                    data=logits.argmax(dim=0, keepdim=True))))
        return data_samples


# ------------------------------------------------------ cascade refinement
@FUNCTION_REWRITER.register_rewriter(
    func_name='mmdet.models.roi_heads.cascade_roi_head.CascadeRoIHead.'
    'predict_bbox', backend=BACKEND)
def cascade_roi_head__predict_bbox__class_specific(
        self, x, batch_img_metas: List[dict], rpn_results_list,
        rcnn_test_cfg, rescale: bool = False, **kwargs):
    """Cascade R-CNN's box stages for one image, as mmdet runs them.

    mmdeploy's default accepts only class-agnostic regression in the
    refining stages; the paper's Cascade Mask R-CNN (4conv1fc heads, as
    Swin's) regresses per class: each stage refines every RoI with the
    deltas of its own argmax class (mmdet's ``regress_by_class``).

    Args:
        rpn_results_list: (dets (1, N, 5), labels) of the RPN rewrite.

    Returns:
        tuple: the last box head's (dets (1, K, 5), labels (1, K)) from
        the stages' mean class scores.
    """
    proposals = rpn_results_list[0]
    num_rois = proposals.shape[1]
    # (N, 5): image index 0, x1, y1, x2, y2
    rois = torch.cat([proposals.new_zeros(num_rois, 1),
                      proposals[0, :, :4]], dim=-1)
    max_shape = batch_img_metas[0]['img_shape']
    stage_scores = []
    for i in range(self.num_stages):
        bbox_head = self.bbox_head[i]
        results = self._bbox_forward(i, x, rois)
        cls_score, bbox_pred = results['cls_score'], results['bbox_pred']
        stage_scores.append(cls_score)
        if i == self.num_stages - 1:
            break
        if not bbox_head.reg_class_agnostic:
            # the 4 deltas of each RoI's argmax class (background excluded)
            label = cls_score[:, :-1].argmax(dim=1)
            size = bbox_head.bbox_coder.encode_size
            index = (label * size).unsqueeze(1) + torch.arange(
                size, device=label.device)
            bbox_pred = torch.gather(bbox_pred, 1, index)
        # mmdeploy's box decoding (clipping by a traced size) is batched
        boxes = bbox_head.bbox_coder.decode(
            rois[:, 1:].unsqueeze(0), bbox_pred.unsqueeze(0),
            max_shape=max_shape)[0]
        rois = torch.cat([rois[:, :1], boxes], dim=-1)
    cls_scores = sum(stage_scores) / float(len(stage_scores))
    return self.bbox_head[-1].predict_by_feat(
        rois=rois.unsqueeze(0), cls_scores=cls_scores.unsqueeze(0),
        bbox_preds=bbox_pred.unsqueeze(0), batch_img_metas=batch_img_metas,
        rcnn_test_cfg=rcnn_test_cfg, rescale=rescale)
