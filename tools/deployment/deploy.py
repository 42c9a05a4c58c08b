# Copyright (c) stvit_mm authors. Licensed under the Apache License 2.0.
"""Deploy a trained STViT detector, segmentor or classifier to ONNX Runtime
with mmdeploy, and show that the deployed model predicts what PyTorch does.

    python tools/deployment/deploy.py CONFIG CHECKPOINT IMAGE \
        --backend onnxruntime --work-dir DIR

CONFIG is any config of the three tasks (Mask R-CNN, Cascade Mask R-CNN,
UperNet, classifiers; e.g. the config a training run dumped into its work
dir), CHECKPOINT its trained weights, IMAGE an image or a folder of images
(all are compared; the first one traces the export). DIR receives
end2end.onnx, mmdeploy's deploy.json / pipeline.json / detail.json and
report.json, all at once when the run succeeds.

Printed: export time and file size; per test scale (the config's and two
others through the same dynamic graph) the ONNX graph against the
rewritten PyTorch model, and mmdeploy's inference against the toolbox's;
the time per image of both runtimes. Exit status 0 when every threshold
holds (docs/deploy.md), 1 when one does not, 2 on a bad input.
"""
import argparse
import sys


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Convert to ONNX Runtime with mmdeploy and compare '
        'with PyTorch')
    parser.add_argument('config', help='model config file')
    parser.add_argument('checkpoint', help='trained checkpoint of CONFIG')
    parser.add_argument('image', help='an image, or a folder of images')
    parser.add_argument('--backend', default='onnxruntime',
                        help='inference backend (supported: onnxruntime)')
    parser.add_argument('--work-dir', required=True,
                        help='folder for end2end.onnx, mmdeploy\'s json '
                        'files and report.json')
    parser.add_argument('--test-scales', type=int, nargs='+', metavar='S',
                        help='Resize scales to compare at (the first also '
                        'traces the export); default: the config\'s, 0.75x '
                        'and 1.25x of it')
    parser.add_argument('--max-images', type=int,
                        help='compare at most this many images of a folder')
    parser.add_argument('--speed-repeats', type=int, default=5,
                        help='timed runs per runtime (0: no timing)')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from stvit_mm.deploy import MMDeployMissingError
    from stvit_mm.deploy.pipeline import DeployInputError, deploy
    from stvit_mm.utils.checkpoint_file import CheckpointFileError
    try:
        report = deploy(args.config, args.checkpoint, args.image,
                        args.work_dir, backend=args.backend,
                        test_scales=args.test_scales,
                        speed_repeats=args.speed_repeats,
                        max_images=args.max_images)
    except (DeployInputError, MMDeployMissingError,
            CheckpointFileError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    speed = report['speed']
    if speed:
        print(f'[deploy] speed per image ({report["toolbox"]} inference API,'
              f' scale {report["test_scales"][0]}, median of '
              f'{speed["repeats"]}, {speed["torch_threads"]} threads): '
              f'PyTorch {speed["torch_seconds"] * 1e3:.1f} ms, ONNX Runtime '
              f'{speed["ort_seconds"] * 1e3:.1f} ms '
              f'({speed["speedup"]:.2f}x)')
    print(f'[deploy] {report["images"]} images; files in '
          f'{report["work_dir"]}; report.json')
    if report['passed']:
        print('[deploy] OK: every comparison within its threshold')
        return 0
    print('[deploy] FAILED:\n  ' + '\n  '.join(report['failures']))
    return 1


if __name__ == '__main__':
    sys.exit(main())
