# Copyright (c) stvit_mm authors. Licensed under the Apache License 2.0.
"""Convert a trained STViT detector, segmentor or classifier to ONNX Runtime
with mmdeploy, then check the deployed model against PyTorch.

One call, :func:`deploy`, does what ``tools/deployment/deploy.py`` prints:

1. checks the inputs (checkpoint fits the config, images readable, backend
   known, mmdeploy installed) before anything is written;
2. exports with mmdeploy's own conversion (this project's deploy configs in
   ``configs/deployment/``; the rewriters of :mod:`.rewriters`) into a
   temporary folder beside the work dir: ``end2end.onnx`` and mmdeploy's
   ``deploy.json`` / ``pipeline.json`` / ``detail.json``;
3. at every test scale, for every image: (a) the ONNX graph against the
   rewritten PyTorch model it was traced from, on the same input tensor;
   (b) mmdeploy's inference API against the toolbox's own
   (``inference_detector``, mmseg's ``inference_model``, mmpretrain's
   ``ImageClassificationInferencer``), with one preprocessing for both: the
   test dataloader's pipeline without annotation loading;
4. times both runtimes, writes ``report.json`` and moves everything into
   the work dir.
"""
import copy
import json
import os
import os.path as osp
import shutil
import statistics
import tempfile
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from mmengine.config import Config

from stvit_mm.utils.inference_pipeline import inference_test_pipeline as \
    deploy_test_pipeline  # noqa: F401  (part of this module's API)
from stvit_mm.utils.inference_pipeline import find_test_dataset

from .compat import mmdeploy_compat, require_mmdeploy

BACKENDS = ('onnxruntime', )
DEPLOY_CONFIGS = {
    'mmdet': 'instance-seg_onnxruntime_dynamic.py',
    'mmseg': 'segmentation_onnxruntime_dynamic.py',
    'mmpretrain': 'classification_onnxruntime_dynamic.py'}
#: the Resize steps whose scale sets the test size
RESIZE_TYPES = ('Resize', 'mmdet.Resize', 'mmseg.Resize')
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
#: the acceptance thresholds of the comparison (see docs/deploy.md)
THRESHOLDS = dict(graph_rel_error=1e-4, top1_identical=0.98,
                  confident_matched=0.98, box_iou=0.99,
                  score_diff=1e-3, mask_iou=0.98, pixel_agreement=0.999,
                  cls_rel_error=1e-4)
#: detections with at least this score are the ones the detection
#: thresholds hold for; below it, near-tie proposals may pair differently
CONFIDENT_SCORE = 0.3


class DeployInputError(ValueError):
    """A deployment input (config, checkpoint, image, backend) is unusable;
    the message names it."""


# ------------------------------------------------------------------ inputs
def deploy_config_file(toolbox: str) -> str:
    """This project's mmdeploy config for the toolbox's task."""
    from stvit_mm.apis.model_index import index_root
    if toolbox not in DEPLOY_CONFIGS:
        raise DeployInputError(f'no deploy config for toolbox {toolbox!r}')
    return osp.join(index_root(), 'configs', 'deployment',
                    DEPLOY_CONFIGS[toolbox])


def list_images(image: str) -> List[str]:
    """``image`` itself, or the images under a folder (sorted); every one must
    decode, else :class:`DeployInputError` names it."""
    import mmcv
    if osp.isdir(image):
        # ImageNet's layout keeps the images in one folder per class
        files = sorted(osp.join(folder, name)
                       for folder, _, names in os.walk(image)
                       for name in names
                       if name.lower().endswith(IMAGE_SUFFIXES))
        if not files:
            raise DeployInputError(f'no images ({", ".join(IMAGE_SUFFIXES)})'
                                   f' in folder {image}')
    elif osp.isfile(image):
        files = [image]
    else:
        raise DeployInputError(f'image {image} does not exist')
    for path in files:
        try:
            array = mmcv.imread(path)
        except Exception as error:  # noqa: BLE001  (cv2/PIL errors vary)
            raise DeployInputError(f'cannot read image {path}: {error}')
        if array is None or array.size == 0:
            raise DeployInputError(f'cannot read image {path}: not an image '
                                   'file OpenCV can decode')
    return files


def with_test_scale(pipeline: list, scale: Optional[int]) -> list:
    """``pipeline`` at ``scale`` pixels (the graph is dynamic: other sizes
    than the exported one are tested): Resize to (scale, scale); a
    classifier's CenterCrop to ``scale`` and its ResizeEdge in the same
    proportion to the crop as before."""
    if scale is None:
        return copy.deepcopy(pipeline)
    pipeline = copy.deepcopy(pipeline)
    crop = next((step['crop_size'] for step in pipeline
                 if step['type'] == 'CenterCrop'), None)
    crop = crop[0] if isinstance(crop, (list, tuple)) else crop
    for step in pipeline:
        if step['type'] in RESIZE_TYPES:
            step['scale'] = (scale, scale)
            step.pop('scale_factor', None)
        elif step['type'] == 'ResizeEdge':
            step['scale'] = int(round(step['scale'] * scale / crop)) \
                if crop else scale
        elif step['type'] == 'CenterCrop':
            step['crop_size'] = scale
    return pipeline


def model_config_for_deploy(cfg: Config, scale: Optional[int] = None
                            ) -> Config:
    """A copy of ``cfg`` whose top-level ``test_pipeline`` (mmdeploy's and
    mmseg's) and test dataloader pipeline (mmdet's and mmpretrain's) are the
    same annotation-free pipeline, at ``scale`` if given."""
    cfg = copy.deepcopy(cfg)
    pipeline = with_test_scale(deploy_test_pipeline(cfg), scale)
    cfg.test_pipeline = copy.deepcopy(pipeline)
    find_test_dataset(cfg).pipeline = copy.deepcopy(pipeline)
    return cfg


def build_checked_model(cfg: Config, checkpoint: str):
    """The config's model with the checkpoint's weights, every tensor
    accounted for: a checkpoint of another config (other classes, widths,
    depths or heads) raises :class:`DeployInputError` naming the keys,
    where mmdeploy's own loader would leave the rest at random.

    Returns:
        tuple: (model in eval mode with ``cfg`` and ``dataset_meta`` set,
        toolbox name).
    """
    from stvit_mm.analysis.flops import build_model_from_config
    from stvit_mm.utils.checkpoint import (is_official_state_dict,
                                           load_checkpoint_file,
                                           official_to_mm, pick_state_dict)
    if not osp.isfile(checkpoint):
        raise DeployInputError(f'checkpoint {checkpoint} does not exist')
    raw = load_checkpoint_file(checkpoint)
    state = pick_state_dict(raw, source=checkpoint)
    if is_official_state_dict(state):
        state = official_to_mm(state)
    if cfg.get('data_preprocessor') and \
            'data_preprocessor' not in cfg.model:
        # as the Runner does: mmpretrain's configs keep it at the top level
        cfg = copy.deepcopy(cfg)
        cfg.model.data_preprocessor = cfg.data_preprocessor
    model, toolbox = build_model_from_config(cfg)
    own = model.state_dict()
    missing = [key for key in own if key not in state]
    unexpected = [key for key in state if key not in own]
    mismatched = [f'{key} {tuple(state[key].shape)} vs {tuple(own[key].shape)}'
                  for key in own
                  if key in state and state[key].shape != own[key].shape]
    if missing or unexpected or mismatched:
        problems = []
        for what, keys in (('missing', missing), ('unexpected', unexpected),
                           ('shape mismatch (checkpoint vs model)',
                            mismatched)):
            if keys:
                problems.append(f'{len(keys)} {what}, e.g. '
                                f'{", ".join(keys[:3])}')
        raise DeployInputError(
            f'checkpoint {checkpoint} does not fit config '
            f'{cfg.filename or "(given)"}: {"; ".join(problems)}')
    model.load_state_dict(state, strict=True)
    meta = raw.get('meta') or {} if isinstance(raw, dict) else {}
    dataset_meta = meta.get('dataset_meta') or {}
    if not dataset_meta.get('classes') and toolbox != 'mmpretrain':
        classes = _config_classes(cfg)
        if classes:
            dataset_meta = dict(dataset_meta, classes=classes)
    model.dataset_meta = dataset_meta
    model.cfg = cfg
    return model.eval(), toolbox


def _config_classes(cfg: Config):
    metainfo = find_test_dataset(cfg).get('metainfo') or {}
    return metainfo.get('classes')


# ------------------------------------------------------------- comparing
def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4) x (M, 4) xyxy boxes -> (N, M) IoU."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clip(0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clip(0).prod(-1)
    return inter / np.maximum(area_a[:, None] + area_b[None] - inter, 1e-12)


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def compare_detections(torch_instances, ort_instances,
                       match_iou: float = 0.9,
                       confident: float = CONFIDENT_SCORE) -> dict:
    """Match ONNX Runtime detections to PyTorch's: same label, the free one
    of highest box IoU, at least ``match_iou``, in PyTorch's score order.
    A detection near a cut-off (score threshold, ``max_per_img``, an NMS
    near-tie) may be kept by one runtime only: it stays unmatched instead
    of being paired with a neighbour.

    Returns:
        dict: ``top1_identical`` (both empty, or the best detections have
        one label and box IoU >= 0.99); counts (``confident``: PyTorch's
        detections with score >= ``confident``, ``confident_matched``);
        ``max_unmatched_score``; over the matched pairs of confident
        detections (``..._all``: of all) the smallest box IoU and mask IoU
        and the largest score difference.
    """
    def arrays(instances):
        scores = instances.scores.cpu().numpy()
        order = np.argsort(-scores, kind='stable')
        out = dict(scores=scores[order],
                   labels=instances.labels.cpu().numpy()[order],
                   boxes=instances.bboxes.cpu().numpy()[order])
        if 'masks' in instances:
            masks = instances.masks
            masks = masks.cpu().numpy() if torch.is_tensor(masks) else \
                np.asarray(masks)
            out['masks'] = masks[order].astype(bool)
        return out

    want, got = arrays(torch_instances), arrays(ort_instances)
    result = dict(torch_dets=len(want['scores']), ort_dets=len(got['scores']),
                  matched=0, min_box_iou=1.0, max_score_diff=0.0,
                  min_mask_iou=1.0, min_box_iou_all=1.0,
                  max_score_diff_all=0.0, min_mask_iou_all=1.0,
                  confident=int((want['scores'] >= confident).sum()),
                  confident_matched=0, max_unmatched_score=0.0)
    if not len(want['scores']) or not len(got['scores']):
        result['top1_identical'] = len(want['scores']) == len(got['scores'])
        result['max_unmatched_score'] = float(max(
            want['scores'].max(initial=0), got['scores'].max(initial=0)))
        return result
    ious = _box_iou(want['boxes'], got['boxes'])
    result['top1_identical'] = bool(
        want['labels'][0] == got['labels'][0] and ious[0, 0] >= 0.99)
    taken = np.zeros(len(got['scores']), bool)
    for i in range(len(want['scores'])):
        candidates = np.where((got['labels'] == want['labels'][i]) & ~taken
                              & (ious[i] >= match_iou))[0]
        if not len(candidates):
            result['max_unmatched_score'] = max(
                result['max_unmatched_score'], float(want['scores'][i]))
            continue
        j = candidates[np.argmax(ious[i, candidates])]
        taken[j] = True
        result['matched'] += 1
        pair = dict(box_iou=float(ious[i, j]), score_diff=float(
            abs(want['scores'][i] - got['scores'][j])), mask_iou=1.0)
        if 'masks' in want and 'masks' in got:
            pair['mask_iou'] = _mask_iou(want['masks'][i], got['masks'][j])
        # over all matched pairs (reported), and over the confident ones
        # (the thresholds): below that score a box refined from another
        # proposal of a near-tie is still "the same" detection
        suffixes = ['_all'] + (['']
                               if want['scores'][i] >= confident else [])
        result['confident_matched'] += int(want['scores'][i] >= confident)
        for suffix in suffixes:
            result['min_box_iou' + suffix] = min(
                result['min_box_iou' + suffix], pair['box_iou'])
            result['max_score_diff' + suffix] = max(
                result['max_score_diff' + suffix], pair['score_diff'])
            result['min_mask_iou' + suffix] = min(
                result['min_mask_iou' + suffix], pair['mask_iou'])
    if (~taken).any():
        result['max_unmatched_score'] = max(
            result['max_unmatched_score'], float(got['scores'][~taken].max()))
    return result


def relative_error(got, want) -> float:
    """max |got - want| / max |want| (inf when the shapes differ)."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        return float('inf')
    if want.size == 0:
        return 0.0
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-12))


# ----------------------------------------------------------------- deploy
class _Runtimes:
    """The PyTorch model, its rewritten twin and the ONNX Runtime model of
    one conversion, for one task."""

    def __init__(self, model, toolbox, model_cfg, deploy_cfg, onnx_file):
        self.model, self.toolbox = model, toolbox
        self.deploy_cfg, self.onnx_file = deploy_cfg, onnx_file
        self.set_scale(model_cfg)
        import onnxruntime
        self.session = onnxruntime.InferenceSession(
            onnx_file, providers=['CPUExecutionProvider'])
        self.backend_model = self.processor.build_backend_model(
            [onnx_file],
            data_preprocessor_updater=self.processor.update_data_preprocessor)

    def set_scale(self, model_cfg):
        """Run the pipelines of ``model_cfg`` from now on."""
        from mmdeploy.apis.utils import build_task_processor
        self.model_cfg = model_cfg
        self.model.cfg = model_cfg
        self.processor = build_task_processor(model_cfg, self.deploy_cfg,
                                              'cpu')
        self._inferencer = None

    # -- the three ways to run an image
    def torch_inference(self, image: str):
        """The toolbox's own inference API on the PyTorch model."""
        if self.toolbox == 'mmdet':
            from mmdet.apis import inference_detector
            return inference_detector(self.model, image)
        if self.toolbox == 'mmseg':
            from mmseg.apis import inference_model
            return inference_model(self.model, image)
        if self._inferencer is None:
            from mmpretrain.apis import ImageClassificationInferencer
            # an inferencer made from a model reads its config here
            self.model._config = self.model_cfg
            self._inferencer = ImageClassificationInferencer(
                self.model, pretrained=False, device='cpu')
            # the inferencer takes the config's pipeline at construction
        from mmpretrain.utils import progress
        quiet = progress.disable_progress_bar
        progress.disable_progress_bar = True  # a bar per image otherwise
        try:
            return self._inferencer(image, return_datasamples=True)[0]
        finally:
            progress.disable_progress_bar = quiet

    def ort_inference(self, image: str):
        """mmdeploy's inference API (its task processor and backend
        model), as ``mmdeploy.apis.inference_model`` runs it."""
        inputs, _ = self.processor.create_input(image)
        with torch.no_grad():
            return self.backend_model.test_step(inputs)[0]

    def graph_pairs(self, images: List[str]) -> list:
        """[(ONNX Runtime outputs, rewritten PyTorch outputs, input shape)]
        per image, both runtimes on the same preprocessed input tensor."""
        from mmdeploy.core import RewriterContext, patch_model
        inputs = []
        for image in images:
            data, tensor = self.processor.create_input(
                image, data_preprocessor=self.model.data_preprocessor)
            if isinstance(tensor, (list, tuple)):
                tensor = tensor[0]
            inputs.append((data, tensor,
                           self.session.run(None,
                                            {'input': tensor.numpy()})))
        patched = patch_model(self.model, cfg=self.deploy_cfg,
                              backend='onnxruntime', ir='onnx')
        pairs = []
        # One rewriter context for all images: entering and leaving it
        # walks gc.get_referrers for every rewritten function (~1.4 s each
        # way here, more in a bigger process).
        with mmdeploy_compat(), RewriterContext(
                cfg=self.deploy_cfg, backend='onnxruntime',
                opset=17), torch.no_grad():
            for data, tensor, ort_out in inputs:
                torch_out = patched(tensor, data['data_samples'],
                                    mode='predict')
                if torch.is_tensor(torch_out):
                    torch_out = [torch_out]
                pairs.append((ort_out, [t.numpy() for t in torch_out],
                              tuple(tensor.shape)))
        return pairs


def _export(model, model_cfg, deploy_cfg, image, out_dir) -> str:
    """mmdeploy's torch2onnx steps on the checked model, into out_dir."""
    from mmdeploy.apis.onnx import export
    from mmdeploy.apis.utils import build_task_processor
    from mmdeploy.utils import get_dynamic_axes, get_onnx_config
    processor = build_task_processor(model_cfg, deploy_cfg, 'cpu')
    data, inputs = processor.create_input(
        image, data_preprocessor=model.data_preprocessor)
    if isinstance(inputs, (list, tuple)):
        inputs = inputs[0]
    onnx_cfg = get_onnx_config(deploy_cfg)
    names = onnx_cfg['input_names'] + onnx_cfg['output_names']
    export(model, inputs,
           input_metas={'data_samples': data['data_samples'],
                        'mode': 'predict'},
           output_path_prefix=osp.join(out_dir, 'end2end'),
           backend='onnxruntime',
           input_names=onnx_cfg['input_names'],
           output_names=onnx_cfg['output_names'],
           context_info=dict(deploy_cfg=deploy_cfg),
           opset_version=onnx_cfg['opset_version'],
           dynamic_axes=get_dynamic_axes(deploy_cfg, names),
           verbose=False,
           keep_initializers_as_inputs=onnx_cfg[
               'keep_initializers_as_inputs'],
           optimize=onnx_cfg.get('optimize', False))
    # mmdeploy's export leaves the instance's forward bound to the
    # rewritten one it saw inside its rewriter context; the model is used
    # again here (PyTorch inference), so the class's forward comes back
    model.__dict__.pop('forward', None)
    return osp.join(out_dir, 'end2end.onnx')


def _timed(fn, repeats: int) -> float:
    """Median seconds of ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _pipeline_scale(cfg: Config) -> Optional[int]:
    for step in deploy_test_pipeline(cfg):
        if step['type'] in RESIZE_TYPES and \
                step.get('scale'):
            scale = step['scale']
            return max(scale) if isinstance(scale, (list, tuple)) else scale
        if step['type'] == 'CenterCrop':
            crop = step['crop_size']
            return crop[0] if isinstance(crop, (list, tuple)) else crop
    return None


def default_test_scales(cfg: Config) -> List[Optional[int]]:
    """The config's own test scale, and 0.75x and 1.25x of it (rounded to
    multiples of 8): three sizes through one dynamic graph."""
    scale = _pipeline_scale(cfg)
    if scale is None:
        return [None]
    return [scale, int(round(scale * 0.75 / 8)) * 8,
            int(round(scale * 1.25 / 8)) * 8]


def deploy(config: str, checkpoint: str, image: str, work_dir: str,
           backend: str = 'onnxruntime',
           test_scales: Optional[Sequence[Optional[int]]] = None,
           speed_repeats: int = 5, max_images: Optional[int] = None,
           log=print) -> dict:
    """Convert ``config`` + ``checkpoint`` to ``backend`` in ``work_dir``
    and compare it with PyTorch on ``image`` (a file or a folder).

    Args:
        test_scales: the Resize scales compared; the first one is also the
            export's. Default: :func:`default_test_scales`.
        speed_repeats: timed runs per runtime (0: no timing).
        max_images: compare at most this many images of a folder.

    Returns:
        dict: the report also written to ``work_dir/report.json``; its
        ``passed`` says whether every threshold of :data:`THRESHOLDS` held.

    Raises:
        DeployInputError: a bad input, before anything is written.
        MMDeployMissingError: mmdeploy or onnxruntime is missing.
    """
    if backend not in BACKENDS:
        raise DeployInputError(
            f'backend {backend!r} is not supported; supported: '
            f'{", ".join(BACKENDS)} (TensorRT: see docs/deploy.md)')
    require_mmdeploy()
    if not osp.isfile(config):
        raise DeployInputError(f'config {config} does not exist')
    images = list_images(image)[:max_images]
    cfg = Config.fromfile(config)
    import stvit_mm  # noqa: F401  (registers STViT for the toolboxes)
    model, toolbox = build_checked_model(cfg, checkpoint)
    # mmdeploy's codebases register their rewriters on import; ours after,
    # so that they take precedence for onnxruntime
    from mmdeploy.utils import load_config
    from . import rewriters  # noqa: F401
    deploy_cfg = load_config(deploy_config_file(toolbox))[0]
    if toolbox == 'mmseg':
        # for the backend model's resize of the logits, as mmseg's
        deploy_cfg.codebase_config.align_corners = bool(
            model.decode_head.align_corners)
    scales = list(test_scales) if test_scales else default_test_scales(cfg)

    parent = osp.dirname(osp.abspath(work_dir))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix='.deploy-', dir=parent)
    try:
        report = _convert_and_compare(model, toolbox, cfg, deploy_cfg,
                                      checkpoint, images, scales, staging,
                                      speed_repeats, log)
        report.update(config=config, checkpoint=checkpoint, backend=backend,
                      work_dir=osp.abspath(work_dir))
        with open(osp.join(staging, 'report.json'), 'w') as f:
            json.dump(report, f, indent=1)
        os.makedirs(work_dir, exist_ok=True)
        for name in os.listdir(staging):
            os.replace(osp.join(staging, name), osp.join(work_dir, name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report


def _convert_and_compare(model, toolbox, cfg, deploy_cfg, checkpoint,
                         images, scales, out_dir, speed_repeats, log):
    from mmdeploy.backend.sdk.export_info import export2SDK
    model_cfg = model_config_for_deploy(cfg, scales[0])
    model.cfg = model_cfg
    with mmdeploy_compat() as fixes:
        start = time.perf_counter()
        onnx_file = _export(model, model_cfg, deploy_cfg, images[0], out_dir)
        export_seconds = time.perf_counter() - start
        # a copy: mmdeploy's mmpretrain SDK export pops keys of the config
        export2SDK(deploy_cfg, copy.deepcopy(model_cfg), out_dir,
                   pth=checkpoint, device='cpu')
    log(f'[deploy] exported {onnx_file} in {export_seconds:.1f} s '
        f'({osp.getsize(onnx_file) / 2**20:.1f} MB); compatibility fixes: '
        f'{", ".join(fixes) or "none needed"}')
    from .tensorrt import tensorrt_readiness
    readiness = tensorrt_readiness(onnx_file)
    log(f'[deploy] onnx.checker: '
        f'{"ok" if readiness["checker_ok"] else readiness["checker_error"]};'
        f' TensorRT 10 parses every op: '
        f'{"yes" if readiness["ready"] else "no"}'
        + ('' if readiness['ready'] else
           f' (unsupported: {readiness["unsupported"]}, restricted use: '
           f'{readiness.get("restricted")})'))
    runtimes = _Runtimes(model, toolbox, model_cfg, deploy_cfg, onnx_file)
    per_scale = []
    for scale in scales:
        runtimes.set_scale(model_config_for_deploy(cfg, scale))
        per_scale.append(_compare_at_scale(runtimes, toolbox, images, scale))
        log('[deploy] ' + _scale_line(toolbox, per_scale[-1]))
    speed = {}
    if speed_repeats:
        runtimes.set_scale(model_config_for_deploy(cfg, scales[0]))
        speed = dict(
            image=images[0], repeats=speed_repeats,
            torch_seconds=_timed(lambda: runtimes.torch_inference(images[0]),
                                 speed_repeats),
            ort_seconds=_timed(lambda: runtimes.ort_inference(images[0]),
                               speed_repeats),
            torch_threads=torch.get_num_threads())
        speed['speedup'] = speed['torch_seconds'] / speed['ort_seconds']
    report = dict(
        toolbox=toolbox, images=len(images), test_scales=scales,
        onnx_file='end2end.onnx', onnx_mb=osp.getsize(onnx_file) / 2**20,
        export_seconds=export_seconds, torch_fixes=fixes,
        tensorrt_readiness={key: readiness[key] for key in (
            'checker_ok', 'ready', 'unsupported', 'ops')},
        per_scale=per_scale, speed=speed, thresholds=THRESHOLDS)
    report['failures'] = check_thresholds(toolbox, per_scale)
    report['passed'] = not report['failures']
    return report


def _compare_at_scale(runtimes, toolbox, images, scale) -> dict:
    graph_errors, sizes, records = [], set(), []
    for image, (ort_out, torch_out, shape) in zip(
            images, runtimes.graph_pairs(images)):
        sizes.add(shape[2:])
        graph_errors.append(max(
            relative_error(got, want) for got, want in zip(ort_out,
                                                           torch_out)))
        want = runtimes.torch_inference(image)
        got = runtimes.ort_inference(image)
        if toolbox == 'mmdet':
            records.append(compare_detections(want.pred_instances,
                                              got.pred_instances))
        elif toolbox == 'mmseg':
            a = want.pred_sem_seg.data.cpu().numpy()
            b = got.pred_sem_seg.data.cpu().numpy()
            records.append(dict(pixels=int(a.size),
                                equal=int((a == b).sum()) if a.shape ==
                                b.shape else 0))
        else:
            records.append(dict(
                rel_error=relative_error(got.pred_score.cpu().numpy(),
                                         want.pred_score.cpu().numpy()),
                top1_equal=bool(int(got.pred_score.argmax()) ==
                                int(want.pred_score.argmax()))))
    result = dict(scale=scale, input_sizes=sorted(sizes),
                  graph_max_rel_error=max(graph_errors))
    if toolbox == 'mmdet':
        matched = [r for r in records if r['matched']]
        result.update(
            top1_identical=float(np.mean([r['top1_identical']
                                          for r in records])),
            torch_dets=sum(r['torch_dets'] for r in records),
            ort_dets=sum(r['ort_dets'] for r in records),
            matched=sum(r['matched'] for r in records),
            confident=sum(r['confident'] for r in records),
            confident_matched=sum(r['confident_matched'] for r in records),
            max_unmatched_score=max(r['max_unmatched_score']
                                    for r in records),
            **{key: reduce((r[key] for r in matched), default=default)
               for key, reduce, default in (
                   ('min_box_iou', min, 1.), ('max_score_diff', max, 0.),
                   ('min_mask_iou', min, 1.), ('min_box_iou_all', min, 1.),
                   ('max_score_diff_all', max, 0.),
                   ('min_mask_iou_all', min, 1.))})
    elif toolbox == 'mmseg':
        result.update(pixel_agreement=sum(r['equal'] for r in records) /
                      sum(r['pixels'] for r in records))
    else:
        result.update(max_rel_error=max(r['rel_error'] for r in records),
                      top1_equal=float(np.mean([r['top1_equal']
                                                for r in records])))
    return result


def _scale_line(toolbox: str, r: dict) -> str:
    sizes = ', '.join(f'{h}x{w}' for h, w in r['input_sizes'][:3])
    head = (f'scale {r["scale"]} (inputs {sizes}'
            f'{", ..." if len(r["input_sizes"]) > 3 else ""}): graph vs '
            f'rewritten PyTorch max rel. error {r["graph_max_rel_error"]:.1e}')
    if toolbox == 'mmdet':
        return (f'{head}; vs mmdet: top-1 identical {r["top1_identical"]:.1%}'
                f', matched {r["matched"]}/{r["torch_dets"]} (ORT '
                f'{r["ort_dets"]}; score >= {CONFIDENT_SCORE}: '
                f'{r["confident_matched"]}/'
                f'{r["confident"]}; best unmatched score '
                f'{r["max_unmatched_score"]:.3f}); score >= '
                f'{CONFIDENT_SCORE} (all matched): min box IoU '
                f'{r["min_box_iou"]:.4f} '
                f'({r["min_box_iou_all"]:.4f}), max score diff '
                f'{r["max_score_diff"]:.1e} ({r["max_score_diff_all"]:.1e}),'
                f' min mask IoU {r["min_mask_iou"]:.4f} '
                f'({r["min_mask_iou_all"]:.4f})')
    if toolbox == 'mmseg':
        return f'{head}; vs mmseg: pixels equal {r["pixel_agreement"]:.4%}'
    return (f'{head}; vs mmpretrain: scores max rel. error '
            f'{r["max_rel_error"]:.1e}, top-1 equal {r["top1_equal"]:.1%}')


def check_thresholds(toolbox: str, per_scale: List[dict]) -> List[str]:
    """The comparisons that miss :data:`THRESHOLDS`, one line each."""
    t = THRESHOLDS
    failures = []
    for r in per_scale:
        where = f'scale {r["scale"]}'
        checks = [(r['graph_max_rel_error'] <= t['graph_rel_error'],
                   f'graph rel. error {r["graph_max_rel_error"]:.1e} > '
                   f'{t["graph_rel_error"]:g}')]
        if toolbox == 'mmdet':
            checks += [
                (r['top1_identical'] >= t['top1_identical'],
                 f'top-1 identical {r["top1_identical"]:.1%} < '
                 f'{t["top1_identical"]:.0%}'),
                (r['confident_matched'] >= t['confident_matched'] *
                 r['confident'],
                 f'matched {r["confident_matched"]} of {r["confident"]} '
                 f'detections with score >= {CONFIDENT_SCORE}'),
                (r['min_box_iou'] >= t['box_iou'],
                 f'min box IoU {r["min_box_iou"]:.4f} < {t["box_iou"]}'),
                (r['max_score_diff'] <= t['score_diff'],
                 f'score diff {r["max_score_diff"]:.1e} > '
                 f'{t["score_diff"]:g}'),
                (r['min_mask_iou'] >= t['mask_iou'],
                 f'min mask IoU {r["min_mask_iou"]:.4f} < {t["mask_iou"]}')]
        elif toolbox == 'mmseg':
            checks.append((r['pixel_agreement'] >= t['pixel_agreement'],
                           f'pixels equal {r["pixel_agreement"]:.4%} < '
                           f'{t["pixel_agreement"]:.1%}'))
        else:
            checks.append((r['max_rel_error'] <= t['cls_rel_error'],
                           f'scores rel. error {r["max_rel_error"]:.1e} > '
                           f'{t["cls_rel_error"]:g}'))
        failures += [f'{where}: {text}' for ok, text in checks if not ok]
    return failures
