# UperNet (mmseg) -> end2end.onnx with output `output`: the class logits
# (B, num_classes, H, W) at the input's size. with_argmax=False and the
# backend model below resize the logits to the original image before the
# argmax, as mmseg does (mmdeploy's own model takes the argmax first).
_base_ = ['./_base_/onnxruntime.py']

onnx_config = dict(
    output_names=['output'],
    dynamic_axes=dict(
        input=dict({0: 'batch', 2: 'height', 3: 'width'}),
        output=dict({0: 'batch', 2: 'height', 3: 'width'})))
codebase_config = dict(
    type='mmseg',
    task='Segmentation',
    with_argmax=False,
    # registered by stvit_mm.deploy.rewriters
    model_type='stvit_seg_logits')
