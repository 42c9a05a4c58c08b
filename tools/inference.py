# Copyright (c) stvit_mm authors. Licensed under the Apache License 2.0.
"""Run one image through any config of this repository and draw what the
model sees; the toolbox (mmdet, mmseg, mmpretrain) and its own inferencer
come from the config's default_scope.

    python tools/inference.py demo.jpg configs/detection/mask_rcnn_stvit_s.py CKPT --out det.png
    python tools/inference.py demo.jpg configs/segmentation/upernet_stvit_s.py CKPT --out seg.png
    python tools/inference.py demo.jpg configs/classification/stvit_s_in1k.py CKPT --out cls.png

Detection draws boxes and masks with score >= --score-thr, segmentation the
class map over the image, classification the top --topk classes with their
scores; the same predictions are printed. Without CHECKPOINT the weights are
random (the toolbox warns), which shows that the pipeline runs, not what a
trained model sees.
"""
import argparse
import pickle
import sys

import mmcv


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('image', help='image file')
    parser.add_argument('config', help='config file of any of the three tasks')
    parser.add_argument('checkpoint', nargs='?',
                        help='trained checkpoint (default: random weights)')
    parser.add_argument('--out', required=True,
                        help='where to write the picture (e.g. out.png)')
    parser.add_argument('--device', default='cpu', help="e.g. 'cuda:0'")
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='detection: lowest score drawn and printed')
    parser.add_argument('--topk', type=int, default=5,
                        help='classification: classes drawn and printed')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from stvit_mm.apis.inference import inference
    try:
        result = inference(args.image, args.config, args.checkpoint,
                           device=args.device, score_thr=args.score_thr,
                           topk=args.topk)
    except (OSError, ValueError, pickle.UnpicklingError) as error:
        # bad input (file, image, checkpoint): say what, without a traceback
        sys.exit(f'error: {error}')
    print(f'{result.task}: {args.image}')
    print('\n'.join(result.lines))
    mmcv.imwrite(result.visualization[..., ::-1], args.out)  # RGB -> BGR
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
