"""The ``deepfill-min`` command: one function per subcommand.

Bad input (a ValueError or FileNotFoundError) is reported as ``deepfill-min: error: ...`` with exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def cmd_attention_demo(args: argparse.Namespace) -> int:
    from .demo import attention_demo  # noqa: PLC0415  (keep `deepfill-min --help` fast)

    path = attention_demo(tuple(args.image), args.size, tuple(args.hole) if args.hole else None, args.passes,
                          args.softmax_scale, args.out)  # fmt: skip
    print(f"wrote {path}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .config import make_config  # noqa: PLC0415
    from .experiment import config_from_run, train_and_evaluate  # noqa: PLC0415

    run_dir = Path(args.run_dir or f"runs/{args.preset}")
    if args.resume:
        cfg = config_from_run(run_dir, args.overrides)
    else:
        cfg = make_config(args.preset, args.config, args.overrides)
    report = train_and_evaluate(cfg, run_dir, resume=args.resume)
    if "initial" in report:
        print(f"held-out hole L1 ([0, 1] scale, {cfg.hole_size[0]}x{cfg.hole_size[1]} centred holes):")
        print(f"  untrained generator  {report['initial']['model']:.4f}")
        print(f"  after {report['step']:>5} steps    {report['final']['model']:.4f}")
        print(f"  trivial fill         {report['final']['mean_fill']:.4f}  (mean colour of the known pixels)")
    print(f"run directory: {run_dir} (holdout.png, samples/, log.csv, checkpoints)")
    return 0


def cmd_inpaint(args: argparse.Namespace) -> int:
    from PIL import Image  # noqa: PLC0415
    from tqdm import tqdm  # noqa: PLC0415

    from .data import IMAGE_EXTENSIONS  # noqa: PLC0415
    from .inpaint import inpaint, load_generator, read_image, read_mask  # noqa: PLC0415

    generator, color_order = load_generator(args.checkpoint, args.device)
    image, mask, out = Path(args.image), Path(args.mask), Path(args.out)
    if image.is_dir():  # batch mode: pairs with the same file name in the two folders
        if not mask.is_dir():
            raise ValueError(f"--image {image} is a folder, so --mask must be a folder of masks with the same names")
        images = [p for p in sorted(image.iterdir()) if p.suffix.lower() in IMAGE_EXTENSIONS]
        pairs = [(p, mask / p.name, out / p.name) for p in images]
        if not pairs:
            raise ValueError(f"--image folder {image} holds no images")
        out.mkdir(parents=True, exist_ok=True)
    else:
        pairs = [(image, mask, out)]
    channel = int(args.mask_channel) if args.mask_channel.isdigit() else args.mask_channel
    for img_path, mask_path, out_path in tqdm(pairs, disable=len(pairs) == 1, unit="image"):
        result = inpaint(read_image(img_path), read_mask(mask_path, args.threshold, channel), generator, color_order,
                         official=args.official, return_flow=args.flow_out is not None)  # fmt: skip
        out_path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(result.image).save(out_path)
        if args.coarse_out:
            Image.fromarray(result.coarse).save(args.coarse_out)
        if args.flow_out and result.flow is not None:
            Image.fromarray(result.flow).save(args.flow_out)
    print(f"wrote {out if len(pairs) > 1 else pairs[0][2]}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate, evaluation_images, write_tables  # noqa: PLC0415
    from .inpaint import load_generator  # noqa: PLC0415

    generators = {}
    for item in args.checkpoint:
        label, _, path = item.rpartition("=")
        generators[label] = load_generator(path)[0]
    size = tuple(args.image_size)
    rows = evaluate(generators, evaluation_images(args.data, size, args.n), tuple(args.hole_size))
    csv_path, md_path = write_tables(rows, args.out)
    print(md_path.read_text())
    print(f"wrote {csv_path} and {md_path}")
    return 0


def cmd_convert_tf(args: argparse.Namespace) -> int:
    from .convert_tf import convert_to_file  # noqa: PLC0415

    print(f"wrote {convert_to_file(args.checkpoint, args.out)} (colour order BGR, as the official models)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepfill-min", description="DeepFill v1 with contextual attention.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("attention-demo", help="fill holes in built-in images with pixel-level contextual attention")
    demo.add_argument("--image", nargs="+", default=["bricks", "hopper", "stripes"],
                      help="built-in names (bricks, dots, hopper, landscape, stripes) or image files")  # fmt: skip
    demo.add_argument("--size", type=int, default=128, help="side of the square images (a multiple of 8)")
    demo.add_argument("--hole", type=int, nargs=4, metavar=("TOP", "LEFT", "HEIGHT", "WIDTH"))
    demo.add_argument("--passes", type=int, default=3, help="passes from the diffused fill")
    demo.add_argument("--softmax-scale", type=float, default=30.0, help="λ of those passes")
    demo.add_argument("--out", default="runs/attention-demo.png")
    demo.set_defaults(func=cmd_attention_demo)

    train = sub.add_parser("train", help="train DeepFill v1 (5 critic updates per generator update), then evaluate")
    train.add_argument("--preset", default="tiny", help="tiny (built-in data, CPU), places2-256 or celebahq-256")
    train.add_argument("--config", help="a YAML file of config keys, applied over the preset")
    train.add_argument("--run-dir", help="where logs, samples and checkpoints go (default runs/<preset>)")
    train.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its last checkpoint")
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. batch_size=32")
    train.set_defaults(func=cmd_train)

    paint = sub.add_parser("inpaint", help="fill the white part of a mask in an image (or folders of pairs)")
    paint.add_argument("--checkpoint", required=True, help="a checkpoint file or a training run directory")
    paint.add_argument("--image", required=True, help="an image, or a folder of images")
    paint.add_argument("--mask", required=True, help="its mask (white = hole), or a folder of same-named masks")
    paint.add_argument("--out", required=True, help="the output image, or folder")
    paint.add_argument("--coarse-out", help="also write the coarse (stage 1) result here (single image)")
    paint.add_argument("--flow-out", help="also write the attention flow picture here (single image)")
    paint.add_argument("--threshold", type=float, default=127.5, help="mask values above this are holes")
    paint.add_argument("--mask-channel", default="auto", help="auto, alpha, 0, 1 or 2")
    paint.add_argument("--official", action="store_true", help="the official pipeline: crop to 8, BGR, truncation")
    paint.add_argument("--device", default="cpu")
    paint.set_defaults(func=cmd_inpaint)

    ev = sub.add_parser("evaluate", help="metrics of a model and its baselines on held-out images (fixed masks)")
    ev.add_argument("--checkpoint", nargs="*", default=[], metavar="[LABEL=]PATH",
                    help="checkpoints or run directories to compare (none: the baselines only)")  # fmt: skip
    ev.add_argument("--data", default="builtin", help="'builtin' (the held-out split), a folder or a .flist")
    ev.add_argument("--image-size", type=int, nargs=2, default=[64, 64], metavar=("H", "W"))
    ev.add_argument("--hole-size", type=int, nargs=2, default=[32, 32], metavar=("H", "W"))
    ev.add_argument("--n", type=int, default=32, help="number of images")
    ev.add_argument("--out", default="runs/evaluation", help="folder for results.md and results.csv")
    ev.set_defaults(func=cmd_evaluate)

    conv = sub.add_parser("convert-tf", help="convert an official TensorFlow v1 checkpoint (no TensorFlow needed)")
    conv.add_argument("checkpoint", help="the checkpoint directory (with its 'checkpoint' file) or a snap-N prefix")
    conv.add_argument("--out", required=True, help="the deepfill-min checkpoint to write (.pt)")
    conv.set_defaults(func=cmd_convert_tf)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"deepfill-min: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
