# Copyright (c) stvit_mm authors. Licensed under the Apache License 2.0.
"""Is an ONNX file exported by mmdeploy 1.3.1 (ONNX Runtime backend, opset
17: Mask R-CNN / Cascade Mask R-CNN, UperNet, classifiers with an STViT
backbone) ready for TensorRT 10?

:func:`tensorrt_readiness` answers without TensorRT: it runs the ONNX
checker and compares every operator of the graph (subgraphs of ``If`` /
``Loop`` / ``Scan`` and local functions included) with what the TensorRT 10
ONNX parser imports (:data:`TENSORRT10_ONNX_OPS`) and with mmdeploy's own
TensorRT plugins (:data:`MMDEPLOY_TENSORRT_PLUGINS`), and checks the few
documented restrictions that can be read off the graph (see
:func:`_restrictions`). It is a static check: the proof is an engine,
built by :func:`build_tensorrt_engine` where ``tensorrt`` and a GPU are
present; :func:`write_tensorrt_report` does both for a list of files
(tools/gpu_report.sh calls it when STVIT_MM_GPU_REPORT_ONNX names ONNX
files).
"""
import collections
import ctypes
import os
import time
from typing import Dict, List, Optional, Sequence, Tuple

# The operators of the default ONNX domain ("" / "ai.onnx") marked "Y" in the
# support matrix of the TensorRT 10 ONNX parser: onnx/onnx-tensorrt,
# docs/operators.md at the 10.1-GA release (commit 96e7811, June 2024;
# "TensorRT 10.0 supports operators in the inclusive range of opset 9 to
# opset 20"). The same 150 names are the importers the parser registers
# (DEFINE_BUILTIN_OP_IMPORTER in onnxOpImporters.cpp of that commit).
# Restrictions there that matter for detectors / segmentors:
# - Resize: modes nearest and linear only (no cubic), no antialias,
#   aspect-ratio policy stretch; coordinate modes half_pixel,
#   pytorch_half_pixel, tf_half_pixel_for_nn, asymmetric, align_corners.
# - TopK: ``sorted`` must be 1 and K below 3840 (mmdet's nms_pre is 1000).
# - Squeeze, Reduce*, Pad, CumSum: an ``axes`` / ``axis`` input must be an
#   initializer (the parser asserts weights: an initializer or a Constant
#   node's output). Slice, Unsqueeze: axes must be known at parse time (a
#   shape computation it can fold passes; not checked here).
# - MaxPool: no ``Indices`` output. If: both branches' outputs of the same
#   rank. Loop: no dynamic scan-output length.
# - NonMaxSuppression, RoiAlign, Range, NonZero, GridSample (4D input):
#   supported (FP32/FP16), no further restriction listed.
# - Col2Im (torch's F.fold), Unique, Compress, the Sequence* ops and
#   Optional* ops are not supported.
TENSORRT10_ONNX_OPS = frozenset("""
    Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool
    BatchNormalization Cast CastLike Ceil Celu Clip Concat Constant
    ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DeformConv
    DepthToSpace DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand
    EyeLike Flatten Floor GRU Gather GatherElements GatherND Gelu Gemm
    GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual
    GridSample GroupNormalization HardSigmoid HardSwish Hardmax Identity If
    ImageScaler InstanceNormalization IsInf IsNaN LRN LSTM LayerNormalization
    LeakyRelu Less LessOrEqual Log LogSoftmax Loop LpNormalization LpPool
    MatMul Max MaxPool Mean MeanVarianceNormalization Min Mish Mod Mul Neg
    NonMaxSuppression NonZero Not OneHot Or PRelu Pad ParametricSoftplus Pow
    QuantizeLinear RNN RandomNormal RandomNormalLike RandomUniform
    RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum
    ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum
    ReduceSumSquare Relu Reshape Resize ReverseSequence RoiAlign Round
    ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink
    Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth
    Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose
    Trilu Unsqueeze Upsample Where Xor
""".split())

# The plugins that mmdeploy 1.3.1 registers with TensorRT, by the name the
# ONNX node carries (the parser looks a node it has no importer for up in
# the plugin registry by its op_type, whatever its domain). Read from the
# manylinux wheel mmdeploy-1.3.1 (mmdeploy/lib/libmmdeploy_tensorrt_ops.so:
# its 14 plugin creator classes and their name strings) and matched with
# csrc/mmdeploy/backend_ops/tensorrt/ of open-mmlab/mmdeploy v1.3.1 and the
# symbolics of mmdeploy/ (``g.op('mmdeploy::...')``, ``mmcv::grid_sampler``).
# Its ScatterND plugin is compiled only for TensorRT <= 7, so it is absent.
# Note: that wheel's library links libnvinfer.so.8 (TensorRT 8, CUDA 11);
# for TensorRT 10 it has to be rebuilt from mmdeploy's sources.
MMDEPLOY_TENSORRT_PLUGINS = frozenset({
    'GatherTopk',                         # gather_topk
    'GridPriorsTRT',                      # grid_priors (anchors)
    'MMCVDeformConv2d',                   # deform_conv
    'MMCVModulatedDeformConv2d',          # modulated_deform_conv (DCNv2)
    'MMCVMultiLevelRoiAlign',             # multi_level_roi_align
    'MMCVMultiLevelRotatedRoiAlign',      # multi_level_rotated_roi_align
    'MMCVMultiScaleDeformableAttention',  # multi_scale_deform_attn
    'MMCVRoiAlign',                       # roi_align
    'ScaledDotProductAttentionTRT',       # scaled_dot_product_attention
    'TRTBatchedNMS',                      # batched_nms
    'TRTBatchedRotatedNMS',               # batched_rotated_nms
    'TRTBicubicInterpolate',              # bicubic_interpolate
    'TRTInstanceNormalization',           # instance_norm
    'grid_sampler',                       # grid_sampler
})

_DEFAULT_DOMAINS = ('', 'ai.onnx')
# from the Resize row of docs/operators.md (10.1-GA)
_RESIZE_MODES = ('nearest', 'linear')
_RESIZE_COORDINATES = ('half_pixel', 'pytorch_half_pixel',
                       'tf_half_pixel_for_nn', 'asymmetric', 'align_corners')
_TOPK_MAX_K = 3840
# op -> index of the input that must be weights ("axes" / "axis"): where
# the 10.1-GA importers call assertIsWeights / check is_weights()
_CONSTANT_INPUTS = dict(Squeeze=1, Pad=3, CumSum=1,
                        **{op: 1 for op in (
                            'ReduceL1', 'ReduceL2', 'ReduceLogSum',
                            'ReduceLogSumExp', 'ReduceMax', 'ReduceMean',
                            'ReduceMin', 'ReduceProd', 'ReduceSum',
                            'ReduceSumSquare')})
# keeps the plugin libraries loaded for the life of the process
_PLUGIN_LIBRARIES: List[ctypes.CDLL] = []


def _op_name(domain: str, op_type: str) -> str:
    """'Conv' for the default domain, 'mmdeploy::grid_sampler' otherwise."""
    return op_type if domain in _DEFAULT_DOMAINS else f'{domain}::{op_type}'


def _subgraphs(node) -> list:
    """The GraphProtos held by a node's attributes (If branches, Loop and
    Scan bodies)."""
    import onnx
    graphs = []
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            graphs.append(attr.g)
        elif attr.type == onnx.AttributeProto.GRAPHS:
            graphs.extend(attr.graphs)
    return graphs


def _walk(graph, outer: frozenset = frozenset()):
    """Yields (node, names of the constants visible to it), depth first
    through subgraphs (which see their outer graphs' names). Constants:
    initializers and outputs of Constant nodes, the tensors the parser
    imports as weights."""
    constants = set(outer)
    constants.update(init.name for init in graph.initializer)
    constants.update(out for node in graph.node
                     if node.op_type == 'Constant'
                     and node.domain in _DEFAULT_DOMAINS
                     for out in node.output)
    constants = frozenset(constants)
    for node in graph.node:
        yield node, constants
        for sub in _subgraphs(node):
            yield from _walk(sub, constants)


def _constant_int(name: str, graph) -> Optional[int]:
    """The first value of a constant integer tensor of ``graph``'s top level
    (an initializer or a Constant node's ``value``), else None."""
    from onnx import numpy_helper
    for init in graph.initializer:
        if init.name == name:
            values = numpy_helper.to_array(init).reshape(-1)
            return int(values[0]) if values.size else None
    for node in graph.node:
        if node.op_type == 'Constant' and name in node.output:
            for attr in node.attribute:
                if attr.name == 'value':
                    values = numpy_helper.to_array(attr.t).reshape(-1)
                    return int(values[0]) if values.size else None
    return None


def _restrictions(node, constants, graph) -> List[str]:
    """The documented TensorRT 10 restrictions (see the comment on
    :data:`TENSORRT10_ONNX_OPS`) that ``node`` breaks, as readable
    strings; only what the graph shows without running it."""
    from onnx import helper
    if node.domain not in _DEFAULT_DOMAINS:
        return []
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    where = f'{node.op_type} {node.name or next(iter(node.output), "")!r}'
    found = []

    def text(key, default):
        value = attrs.get(key, default)
        return value.decode() if isinstance(value, bytes) else value

    if node.op_type == 'Resize':
        mode = text('mode', 'nearest')
        coordinates = text('coordinate_transformation_mode', 'half_pixel')
        if mode not in _RESIZE_MODES:
            found.append(f'{where}: mode={mode} (TensorRT: nearest, linear)')
        if coordinates not in _RESIZE_COORDINATES:
            found.append(f'{where}: coordinate_transformation_mode='
                         f'{coordinates}')
        if attrs.get('antialias', 0):
            found.append(f'{where}: antialias=1')
        if text('keep_aspect_ratio_policy', 'stretch') != 'stretch':
            found.append(f'{where}: keep_aspect_ratio_policy='
                         f'{text("keep_aspect_ratio_policy", "")}')
    elif node.op_type == 'TopK':
        if attrs.get('sorted', 1) != 1:
            found.append(f'{where}: sorted=0')
        k = _constant_int(node.input[1], graph) if len(node.input) > 1 \
            else None
        if k is not None and k >= _TOPK_MAX_K:
            found.append(f'{where}: K={k} (TensorRT: K < {_TOPK_MAX_K})')
    elif node.op_type == 'MaxPool':
        if len(node.output) > 1 and node.output[1]:
            found.append(f'{where}: Indices output')
    index = _CONSTANT_INPUTS.get(node.op_type)
    if (index is not None and len(node.input) > index
            and node.input[index] and node.input[index] not in constants):
        found.append(f'{where}: input {index} (axes) is not an initializer')
    return found


def tensorrt_readiness(onnx_file: str) -> dict:
    """Whether TensorRT 10 can parse ``onnx_file``, judged statically.

    Args:
        onnx_file: an ONNX model (weights inside or as external data; the
            weights are not read).

    Returns:
        dict: ``file``; ``checker_ok`` (bool) and ``checker_error`` (the
        ONNX checker's message or None); ``opset`` (the default domain's
        version, None if the model imports none); ``ops``: sorted list of
        ``(name, count)`` with name ``'Conv'`` for the default domain and
        ``'domain::op'`` for others, over every node including those of
        subgraphs and local functions; ``unsupported``: sorted names of the
        ops the TensorRT 10 parser does not import (default domain: not in
        :data:`TENSORRT10_ONNX_OPS`; other domains: not in
        :data:`MMDEPLOY_TENSORRT_PLUGINS`); ``restricted``: nodes that break
        a documented restriction of a supported op (e.g. ``Resize`` with
        ``mode=cubic``); ``ready``: ``checker_ok`` and nothing unsupported
        or restricted.
    """
    import onnx
    try:
        # the path, not the proto: the checker then also reads models over
        # 2 GB and checks that external data files exist
        onnx.checker.check_model(onnx_file, full_check=False)
        checker_error = None
    except Exception as err:  # noqa: BLE001  (ValidationError, a bad path
        # or protobuf's DecodeError: reported, not raised)
        checker_error = f'{type(err).__name__}: {err}'.strip()
    model = onnx.load(onnx_file, load_external_data=False)
    opset = next((o.version for o in model.opset_import
                  if o.domain in _DEFAULT_DOMAINS), None)
    # calls of the model's local functions are inlined by the parser
    # (LocalFunctionImporter): their bodies' ops are what counts
    functions = {(f.domain, f.name): f for f in model.functions}
    graphs = [model.graph] + [
        onnx.helper.make_graph(list(f.node), f.name, [], [])
        for f in model.functions]

    counts = collections.Counter()
    unsupported, restricted = set(), []
    for graph in graphs:
        for node, constants in _walk(graph):
            if (node.domain, node.op_type) in functions:
                continue
            name = _op_name(node.domain, node.op_type)
            counts[name] += 1
            if node.domain in _DEFAULT_DOMAINS:
                if node.op_type not in TENSORRT10_ONNX_OPS:
                    unsupported.add(name)
                    continue
            elif node.op_type not in MMDEPLOY_TENSORRT_PLUGINS:
                unsupported.add(name)
                continue
            restricted.extend(_restrictions(node, constants, graph))
    return dict(file=onnx_file, checker_ok=checker_error is None,
                checker_error=checker_error, opset=opset,
                ops=sorted(counts.items()), unsupported=sorted(unsupported),
                restricted=restricted,
                ready=(checker_error is None and not unsupported
                       and not restricted))


def format_readiness(report: dict) -> str:
    """A few lines for a person: the file, the checker's verdict, the ops
    with their counts and what TensorRT 10 would not parse."""
    lines = [f'{report["file"]} (opset {report["opset"]})']
    if report['checker_ok']:
        lines.append('onnx.checker: ok')
    else:
        lines.append(f'onnx.checker: FAILED: {report["checker_error"]}')
    total = sum(count for _, count in report['ops'])
    lines.append(f'ops ({total} nodes): ' + ', '.join(
        f'{name} x{count}' for name, count in report['ops']))
    if report['unsupported']:
        lines.append('not parsed by TensorRT 10 (and no mmdeploy TensorRT '
                     'plugin): ' + ', '.join(report['unsupported']))
    else:
        lines.append('all ops are parsed by TensorRT 10 (or are mmdeploy '
                     'TensorRT plugins)')
    for item in report.get('restricted', []):
        lines.append(f'restriction: {item}')
    lines.append('TensorRT-ready: ' + ('yes' if report['ready'] else 'no'))
    return '\n'.join(lines)


def dynamic_profile(onnx_file: str, input_name: str = 'input',
                    sizes: Sequence[int] = (64, 512, 1344)
                    ) -> Tuple[Tuple[int, ...], ...]:
    """(min, opt, max) shapes of ``input_name`` for an optimization profile:
    its static dims as they are, a dynamic batch (dim 0) 1, every other
    dynamic dim ``sizes`` (min, opt, max); e.g. ``(1, 3, 64, 64)``,
    ``(1, 3, 512, 512)``, ``(1, 3, 1344, 1344)`` for mmdeploy's
    ``input`` of shape (batch, 3, height, width)."""
    import onnx
    graph = onnx.load(onnx_file, load_external_data=False).graph
    initializers = {init.name for init in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    match = [i for i in inputs if i.name == input_name]
    if not match:
        raise ValueError(f'{onnx_file} has no input {input_name!r} '
                         f'(inputs: {[i.name for i in inputs]})')
    dims = match[0].type.tensor_type.shape.dim
    shapes = []
    for size in sizes:
        shapes.append(tuple(
            d.dim_value if d.HasField('dim_value') and d.dim_value > 0
            else (1 if axis == 0 else size) for axis, d in enumerate(dims)))
    return tuple(shapes)


def _parser_error(error) -> str:
    """One line for an IParserError: node, operator, description."""
    try:
        return (f'node {error.node()} ({error.node_name()!r}, '
                f'{error.node_operator()}): {error.desc()}')
    except AttributeError:  # older bindings: only __str__
        return str(error)


def build_tensorrt_engine(onnx_file: str, engine_file: str,
                          min_shape: Sequence[int],
                          opt_shape: Sequence[int],
                          max_shape: Sequence[int],
                          input_name: str = 'input', fp16: bool = False,
                          plugin_library: Optional[str] = None,
                          workspace_gib: float = 4.0) -> Dict[str, object]:
    """Build and serialize a TensorRT 10 engine from ``onnx_file``.

    Args:
        onnx_file: the ONNX model (e.g. mmdeploy's ``end2end.onnx``).
        engine_file: where the serialized engine is written.
        min_shape, opt_shape, max_shape: the optimization profile of the
            dynamic input, e.g. (1, 3, 64, 64), (1, 3, 512, 512),
            (1, 3, 1344, 1344) for (batch, channels, height, width); see
            :func:`dynamic_profile`.
        input_name: the input they apply to (mmdeploy names it ``input``);
            the model must have no other input with dynamic dims.
        fp16: allow FP16 kernels (``BuilderFlag.FP16``).
        plugin_library: a TensorRT plugin library to load first, e.g.
            mmdeploy's ``libmmdeploy_tensorrt_ops.so`` built for TensorRT
            10; its plugins register themselves when it is loaded.
        workspace_gib: the builder's workspace memory pool limit.

    Returns:
        dict: ``engine`` (the path), ``seconds`` (parse + build time),
        ``size_mb`` (the engine file's size in MiB).

    Raises:
        ImportError: ``tensorrt`` is not importable.
        RuntimeError: the parser rejected the model (its errors are
            listed) or the builder returned no engine.
    """
    try:
        import tensorrt as trt
    except ImportError as err:
        raise ImportError(
            'build_tensorrt_engine needs the TensorRT 10 Python package '
            f'(pip install tensorrt): {err}') from err
    logger = trt.Logger(trt.Logger.WARNING)
    if plugin_library:
        # mmdeploy's plugins register at load time (REGISTER_TENSORRT_PLUGIN)
        _PLUGIN_LIBRARIES.append(ctypes.CDLL(plugin_library))
    # TensorRT's own plugins, for ops the parser maps to them
    trt.init_libnvinfer_plugins(logger, '')

    start = time.perf_counter()
    builder = trt.Builder(logger)
    # TensorRT 10: every network is explicit-batch; EXPLICIT_BATCH is
    # deprecated and ignored, so no creation flag is needed
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    # from the file, not bytes: external data is then found beside it
    if not parser.parse_from_file(os.path.abspath(onnx_file)):
        errors = [_parser_error(parser.get_error(i))
                  for i in range(parser.num_errors)]
        raise RuntimeError(f'TensorRT could not parse {onnx_file}:\n' +
                           '\n'.join(errors))

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE,
                                 int(workspace_gib * (1 << 30)))
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    names = [tensor.name for tensor in inputs]
    if input_name not in names:
        raise ValueError(f'{onnx_file} has no input {input_name!r} '
                         f'(inputs: {names})')
    others = [t.name for t in inputs
              if t.name != input_name and -1 in tuple(t.shape)]
    if others:
        raise ValueError(f'inputs {others} have dynamic dims too; only '
                         f'{input_name!r} gets a profile')
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, tuple(min_shape), tuple(opt_shape),
                      tuple(max_shape))
    config.add_optimization_profile(profile)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f'TensorRT built no engine from {onnx_file} '
                           '(see the TensorRT log above)')
    seconds = time.perf_counter() - start
    os.makedirs(os.path.dirname(os.path.abspath(engine_file)), exist_ok=True)
    with open(engine_file, 'wb') as f:
        f.write(serialized)  # IHostMemory supports the buffer protocol
    return dict(engine=engine_file, seconds=round(seconds, 2),
                size_mb=round(os.path.getsize(engine_file) / 2**20, 2))


def write_tensorrt_report(md_file: str, onnx_files: Sequence[str],
                          build: bool = True,
                          plugin_library: Optional[str] = None,
                          sizes: Sequence[int] = (64, 512, 1344)) -> str:
    """tools/gpu_report.sh's optional step: for each ONNX file its
    readiness (:func:`format_readiness`) and, with ``build`` and an
    importable ``tensorrt``, the result of :func:`build_tensorrt_engine`
    (profile from :func:`dynamic_profile` with ``sizes``; the engine goes
    to a temporary folder and is deleted). Written as markdown to
    ``md_file`` after every file, so a run stopped by a timeout leaves what
    it did. Errors are written, never raised (except an unwritable
    ``md_file``). Returns the markdown."""
    import shutil
    import tempfile
    lines = ['# TensorRT readiness', '']
    trt_version = None
    if not build:
        lines.append('engine build not requested (a dry run): readiness '
                     'only')
    else:
        try:
            import tensorrt
            trt_version = tensorrt.__version__
            lines.append(f'tensorrt {trt_version}')
        except Exception as err:  # noqa: BLE001  (any failure: no engines)
            lines.append('tensorrt not importable: engine build skipped '
                         f'({type(err).__name__}: {err})')

    def save() -> str:
        text = '\n'.join(lines) + '\n'
        with open(md_file, 'w') as f:
            f.write(text)
        return text

    text = save()
    for onnx_file in onnx_files:
        lines += ['', f'## {onnx_file}', '', '```']
        try:
            lines.append(format_readiness(tensorrt_readiness(onnx_file)))
            if trt_version:
                shapes = dynamic_profile(onnx_file, sizes=sizes)
                profile = ' / '.join('x'.join(map(str, s)) for s in shapes)
                folder = tempfile.mkdtemp(prefix='stvit_mm_trt_')
                try:
                    result = build_tensorrt_engine(
                        onnx_file, os.path.join(folder, 'end2end.engine'),
                        *shapes, plugin_library=plugin_library)
                finally:
                    shutil.rmtree(folder, ignore_errors=True)
                lines.append(f'engine (TensorRT {trt_version}, profile '
                             f'{profile}): built in {result["seconds"]} s, '
                             f'{result["size_mb"]} MiB')
        except Exception as err:  # noqa: BLE001  (per file; next one runs)
            lines.append(f'FAILED: {type(err).__name__}: {err}')
        lines.append('```')
        text = save()
    return text
