"""stvit_mm.deploy.tensorrt without TensorRT: the static readiness check on
small ONNX graphs built here (supported ops, an unknown op, custom-domain
ops with and without an mmdeploy plugin, subgraphs, an invalid model, a
documented restriction) and on a torch export; the engine build only where
``tensorrt`` is importable."""
import pytest
import torch
import torch.nn.functional as F

onnx = pytest.importorskip('onnx')
from onnx import TensorProto, helper  # noqa: E402

from stvit_mm.deploy.tensorrt import (MMDEPLOY_TENSORRT_PLUGINS,  # noqa: E402
                                      TENSORRT10_ONNX_OPS,
                                      build_tensorrt_engine, dynamic_profile,
                                      format_readiness, tensorrt_readiness,
                                      write_tensorrt_report)


def _out(name, rank=4):
    """A float output of ``rank`` dims of unknown size."""
    return helper.make_tensor_value_info(
        name, TensorProto.FLOAT, [f'{name}_{i}' for i in range(rank)])


def _save(tmp_path, nodes, name='model', inputs=None, outputs=None,
          initializers=(), opsets=(('', 17),)):
    """A model of ``nodes`` with input x (N, 3, H, W) and output y saved
    under tmp_path; returns its path."""
    inputs = inputs or [helper.make_tensor_value_info(
        'x', TensorProto.FLOAT, ['batch', 3, 'height', 'width'])]
    outputs = outputs or [_out('y')]
    graph = helper.make_graph(nodes, name, inputs, outputs,
                              initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[
        helper.make_opsetid(domain, version) for domain, version in opsets])
    model.ir_version = 8
    path = str(tmp_path / f'{name}.onnx')
    onnx.save(model, path)
    return path


def _weight(name, shape):
    return helper.make_tensor(name, TensorProto.FLOAT, shape,
                              [0.1] * int(torch.Size(shape).numel()))


def test_lists():
    # spot checks against docs/operators.md (onnx-tensorrt 10.1-GA)
    for op in ('Conv', 'LayerNormalization', 'Resize', 'NonMaxSuppression',
               'RoiAlign', 'TopK', 'Range', 'If', 'Loop', 'ScatterND'):
        assert op in TENSORRT10_ONNX_OPS
    for op in ('Col2Im', 'Unique', 'SequenceAt', 'AffineGrid', 'STFT'):
        assert op not in TENSORRT10_ONNX_OPS
    assert len(TENSORRT10_ONNX_OPS) == 150
    assert {'TRTBatchedNMS', 'MMCVMultiLevelRoiAlign', 'MMCVRoiAlign',
            'grid_sampler', 'MMCVModulatedDeformConv2d'} <= \
        MMDEPLOY_TENSORRT_PLUGINS
    assert 'ScatterND' not in MMDEPLOY_TENSORRT_PLUGINS  # TensorRT <= 7 only


def test_conv_relu_is_ready(tmp_path):
    path = _save(tmp_path, [
        helper.make_node('Conv', ['x', 'w', 'b'], ['c'], pads=[1, 1, 1, 1]),
        helper.make_node('Relu', ['c'], ['y'])],
        initializers=[_weight('w', [4, 3, 3, 3]), _weight('b', [4])])
    report = tensorrt_readiness(path)
    assert report['checker_ok'] and report['checker_error'] is None
    assert report['opset'] == 17
    assert report['ops'] == [('Conv', 1), ('Relu', 1)]
    assert report['unsupported'] == [] and report['restricted'] == []
    assert report['ready'] is True
    text = format_readiness(report)
    assert 'onnx.checker: ok' in text
    assert 'Conv x1, Relu x1' in text
    assert 'all ops are parsed by TensorRT 10' in text
    assert dynamic_profile(path, 'x') == ((1, 3, 64, 64), (1, 3, 512, 512),
                                          (1, 3, 1344, 1344))
    with pytest.raises(ValueError, match="no input 'input'"):
        dynamic_profile(path)


def test_unknown_and_custom_ops(tmp_path):
    """A made-up op of a custom domain and Col2Im (F.fold; not parsed by
    TensorRT 10) are unsupported; mmdeploy's TRTBatchedNMS plugin and
    mmcv::grid_sampler are not, whatever their domain."""
    path = _save(tmp_path, [
        helper.make_node('Relu', ['x'], ['r']),
        helper.make_node('TRTBatchedNMS', ['r', 'r'], ['n'],
                         domain='mmdeploy'),
        helper.make_node('grid_sampler', ['n', 'r'], ['g'], domain='mmcv'),
        helper.make_node('MadeUpOp', ['g'], ['m'], domain='mmdeploy'),
        helper.make_node('Col2Im', ['m', 'shape', 'block'], ['y'])],
        initializers=[helper.make_tensor('shape', TensorProto.INT64, [2],
                                         [8, 8]),
                      helper.make_tensor('block', TensorProto.INT64, [2],
                                         [3, 3])],
        opsets=(('', 18), ('mmdeploy', 1), ('mmcv', 1)))
    report = tensorrt_readiness(path)
    assert report['checker_ok'], report['checker_error']
    assert report['opset'] == 18
    assert dict(report['ops']) == {
        'Relu': 1, 'mmdeploy::TRTBatchedNMS': 1, 'mmcv::grid_sampler': 1,
        'mmdeploy::MadeUpOp': 1, 'Col2Im': 1}
    assert report['unsupported'] == ['Col2Im', 'mmdeploy::MadeUpOp']
    assert report['ready'] is False
    text = format_readiness(report)
    assert 'not parsed by TensorRT 10' in text
    assert 'Col2Im, mmdeploy::MadeUpOp' in text
    assert 'TensorRT-ready: no' in text


def test_made_up_default_domain_op(tmp_path):
    """An op the default domain does not have: the checker fails and the
    op is unsupported."""
    path = _save(tmp_path, [helper.make_node('FancyAttention', ['x'],
                                             ['y'])])
    report = tensorrt_readiness(path)
    assert not report['checker_ok']
    assert 'FancyAttention' in report['checker_error']
    assert report['unsupported'] == ['FancyAttention']
    assert not report['ready']


def test_ops_inside_subgraphs_count(tmp_path):
    """An If whose else branch holds an unsupported op: found and
    counted with the branches' ops."""
    then_branch = helper.make_graph(
        [helper.make_node('Relu', ['x'], ['t'])], 'then', [],
        [_out('t')])
    else_branch = helper.make_graph(
        [helper.make_node('Sigmoid', ['x'], ['s0']),
         helper.make_node('MadeUpOp', ['s0'], ['s'], domain='custom')],
        'else', [],
        [_out('s')])
    path = _save(tmp_path, [
        helper.make_node('ReduceMax', ['x'], ['mx'], keepdims=0),
        helper.make_node('Greater', ['mx', 'zero'], ['cond']),
        helper.make_node('If', ['cond'], ['y'], then_branch=then_branch,
                         else_branch=else_branch)],
        initializers=[helper.make_tensor(
            'zero', TensorProto.FLOAT, [], [0.0])],
        opsets=(('', 17), ('custom', 1)))
    report = tensorrt_readiness(path)
    assert report['checker_ok'], report['checker_error']
    assert dict(report['ops']) == {'ReduceMax': 1, 'Greater': 1, 'If': 1,
                                   'Relu': 1, 'Sigmoid': 1,
                                   'custom::MadeUpOp': 1}
    assert report['unsupported'] == ['custom::MadeUpOp']


def test_invalid_model_is_reported_not_raised(tmp_path):
    path = _save(tmp_path, [
        helper.make_node('Add', ['x', 'undefined'], ['y'])])
    report = tensorrt_readiness(path)
    assert report['checker_ok'] is False
    assert 'undefined' in report['checker_error']
    assert report['unsupported'] == []
    assert report['ready'] is False
    assert 'onnx.checker: FAILED' in format_readiness(report)


def test_documented_restrictions(tmp_path):
    """Supported ops that break a documented restriction: Resize with
    mode=cubic, TopK with K >= 3840, ReduceSum with axes computed at run
    time (not an initializer)."""
    path = _save(tmp_path, [
        helper.make_node('Resize', ['x', '', 'scales'], ['r'],
                         mode='cubic'),
        helper.make_node('Flatten', ['r'], ['f'], axis=0),
        helper.make_node('TopK', ['f', 'k'], ['y', 'i']),
        helper.make_node('Shape', ['x'], ['shp']),
        helper.make_node('ReduceSum', ['x', 'shp'], ['rs'])],
        outputs=[_out('y', 2), _out('rs')],
        initializers=[
            helper.make_tensor('scales', TensorProto.FLOAT, [4],
                               [1, 1, 2, 2]),
            helper.make_tensor('k', TensorProto.INT64, [1], [5000])])
    report = tensorrt_readiness(path)
    assert report['checker_ok'], report['checker_error']
    assert report['unsupported'] == []
    restricted = '\n'.join(report['restricted'])
    assert len(report['restricted']) == 3, restricted
    assert 'mode=cubic' in restricted
    assert 'K=5000' in restricted
    assert 'ReduceSum' in restricted and 'not an initializer' in restricted
    assert not report['ready']
    assert 'restriction: Resize' in format_readiness(report)


class _Tiny(torch.nn.Module):
    """Conv2d, LayerNorm, a matmul with softmax and a bilinear resize: the
    kinds of ops an STViT backbone with a UperNet head exports."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.norm = torch.nn.LayerNorm(8)

    def forward(self, x):
        x = self.conv(x)
        batch, channels, height, width = x.shape
        tokens = self.norm(x.flatten(2).transpose(1, 2))  # (B, HW, C)
        attn = (tokens @ tokens.transpose(1, 2)).softmax(-1)
        tokens = attn @ tokens
        x = tokens.transpose(1, 2).reshape(batch, channels, height, width)
        return F.interpolate(x, scale_factor=2.0, mode='bilinear',
                             align_corners=False)


def test_torch_export_is_ready(tmp_path):
    path = str(tmp_path / 'tiny.onnx')
    torch.onnx.export(_Tiny().eval(), torch.randn(1, 3, 32, 32), path,
                      input_names=['input'], output_names=['output'],
                      dynamic_axes={'input': {0: 'batch', 2: 'height',
                                              3: 'width'}},
                      opset_version=17, dynamo=False)
    report = tensorrt_readiness(path)
    ops = dict(report['ops'])
    assert report['opset'] == 17
    assert {'Conv', 'LayerNormalization', 'MatMul', 'Softmax',
            'Resize'} <= set(ops), ops
    assert report['checker_ok'] and report['unsupported'] == []
    assert report['restricted'] == [], report['restricted']
    assert report['ready'], format_readiness(report)
    assert dynamic_profile(path)[2] == (1, 3, 1344, 1344)


def test_build_without_tensorrt_says_so(tmp_path):
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match='TensorRT 10 Python package'):
            build_tensorrt_engine('missing.onnx', str(tmp_path / 'e.plan'),
                                  (1, 3, 64, 64), (1, 3, 64, 64),
                                  (1, 3, 64, 64))
    else:
        pytest.skip('tensorrt is installed: tools/gpu_report.sh builds '
                    'engines on a GPU machine')


def test_write_tensorrt_report(tmp_path):
    """gpu_report.sh's step 7: readiness of each file, the engine build
    skipped with its reason, a broken file reported without stopping."""
    good = _save(tmp_path, [helper.make_node('Relu', ['x'], ['y'])])
    missing = str(tmp_path / 'missing.onnx')
    md = tmp_path / 'tensorrt.md'
    text = write_tensorrt_report(str(md), [missing, good], build=False)
    assert md.read_text() == text
    assert 'engine build not requested (a dry run)' in text
    assert f'## {missing}' in text and 'FAILED: ' in text
    assert f'## {good}' in text and 'TensorRT-ready: yes' in text
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        text = write_tensorrt_report(str(md), [good])
        assert 'tensorrt not importable: engine build skipped' in text
        assert 'TensorRT-ready: yes' in text
