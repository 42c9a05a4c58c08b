# STViT classifiers (mmpretrain) -> end2end.onnx with output `output`: the
# class scores (B, num_classes) after the head's softmax, as mmpretrain's
# inferencer reports them.
_base_ = ['./_base_/onnxruntime.py']

onnx_config = dict(
    output_names=['output'],
    dynamic_axes=dict(
        input=dict({0: 'batch', 2: 'height', 3: 'width'}),
        output=dict({0: 'batch'})))
codebase_config = dict(type='mmpretrain', task='Classification')
