# Copyright (c) stvit_mm authors. Licensed under the Apache License 2.0.
"""Export an STViT backbone (all out_indices outputs) or a whole classifier
(logits) to ONNX with dynamic batch, height and width, then check
onnxruntime (CPU) against PyTorch at two input sizes.

    python tools/deployment/export_onnx.py \
        configs/classification/stvit_s_in1k.py \
        --checkpoint checkpoints/stvit_s_in1k_mm.pth --out stvit_s.onnx
    python tools/deployment/export_onnx.py \
        configs/detection/mask_rcnn_stvit_s.py \
        --backbone-only --out stvit_s_backbone.onnx

The graph's input is the normalised image (B, 3, H, W), as produced by the
config's data preprocessor. Exits with status 1 if a relative error exceeds
--tolerance.
"""
import argparse
import sys

from mmengine.config import Config, DictAction

from stvit_mm.apis.onnx_export import (DEFAULT_OPSET, build_export_module,
                                       export_onnx, max_relative_errors)


def parse_args():
    parser = argparse.ArgumentParser(description='Export STViT to ONNX')
    parser.add_argument('config', help='config file')
    parser.add_argument('--checkpoint', help='mm-format or official '
                        'checkpoint (random weights if omitted)')
    parser.add_argument('--shape', type=int, nargs=2, default=[224, 224],
                        metavar=('H', 'W'), help='tracing size (the graph '
                        'stays dynamic); also the first verification size')
    parser.add_argument('--out', default='stvit.onnx', help='output file')
    parser.add_argument('--backbone-only', action='store_true',
                        help='export the backbone instead of the classifier')
    parser.add_argument('--opset', type=int, default=DEFAULT_OPSET)
    parser.add_argument('--no-verify', action='store_true',
                        help='skip the onnxruntime check')
    parser.add_argument('--verify-shape', type=int, nargs=2,
                        metavar=('H', 'W'), help='second verification size; '
                        'default (H + 24, W + 72), which pads differently')
    parser.add_argument('--tolerance', type=float, default=1e-4,
                        help='largest accepted max relative error')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if min(args.shape) < 1:
        raise SystemExit(f'--shape must be positive, got {args.shape}')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    module, names = build_export_module(cfg, args.checkpoint,
                                        args.backbone_only)
    shape = tuple(args.shape)
    in_channels = cfg.model.backbone.get('in_channels', 3)
    export_onnx(module, args.out, shape, names, in_channels, args.opset)
    print(f'Exported {"backbone" if args.backbone_only else "classifier"} '
          f'to {args.out} (outputs: {", ".join(names)})')
    if args.no_verify:
        return 0
    second = tuple(args.verify_shape) if args.verify_shape else \
        (shape[0] + 24, shape[1] + 72)
    worst = 0.
    for size, errors in max_relative_errors(module, args.out, [shape, second],
                                            in_channels=in_channels):
        text = ', '.join(f'{n}={e:.2e}' for n, e in zip(names, errors))
        print(f'max relative error at 2x{in_channels}x{size[0]}x{size[1]}: '
              f'{text}')
        worst = max([worst] + errors)
    if worst > args.tolerance:
        print(f'FAILED: max relative error {worst:.2e} > {args.tolerance:g}')
        return 1
    print(f'OK: onnxruntime matches PyTorch (max relative error '
          f'{worst:.2e} <= {args.tolerance:g})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
