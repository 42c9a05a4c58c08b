# Mask R-CNN / Cascade Mask R-CNN (mmdet) -> end2end.onnx with outputs
# dets (B, N, 5: x1, y1, x2, y2, score), labels (B, N) and masks (B, N, 28,
# 28: the mask head's per-RoI masks; pasted into the image outside the graph
# as mmdet does).
_base_ = ['./_base_/onnxruntime.py']

onnx_config = dict(
    output_names=['dets', 'labels', 'masks'],
    dynamic_axes=dict(
        input=dict({0: 'batch', 2: 'height', 3: 'width'}),
        dets=dict({0: 'batch', 1: 'num_dets'}),
        labels=dict({0: 'batch', 1: 'num_dets'}),
        masks=dict({0: 'batch', 1: 'num_dets'})))
codebase_config = dict(
    type='mmdet',
    task='ObjectDetection',
    model_type='end2end',
    # Fallbacks only: the model's test_cfg (score_thr, nms, max_per_img)
    # takes precedence in mmdeploy's heads. pre_top_k=-1 keeps every box,
    # as mmdet's box head does, before its per-class NMS.
    post_processing=dict(
        score_threshold=0.05,
        confidence_threshold=0.005,
        iou_threshold=0.5,
        max_output_boxes_per_class=200,
        pre_top_k=-1,
        keep_top_k=100,
        background_label_id=-1,
        export_postprocess_mask=False))
