# ONNX Runtime through mmdeploy 1.3.1: the TorchScript exporter at opset 17
# (LayerNormalization is one op from 17 on; RoiAlign honours `aligned`, i.e.
# mmcv's half-pixel offset, only from 16 on), dynamic batch, height and width.
onnx_config = dict(
    type='onnx',
    export_params=True,
    keep_initializers_as_inputs=False,
    opset_version=17,
    save_file='end2end.onnx',
    input_names=['input'],
    input_shape=None,  # dynamic: mmdeploy keeps the test pipeline's resize
    # mmdeploy's graph optimiser is a C++ extension built for torch <= 2.1
    optimize=False)
backend_config = dict(type='onnxruntime')
