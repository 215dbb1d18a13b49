"""The ``deepfill-min`` command: one function per subcommand.

Whatever goes wrong with the user's input (a file, a folder, an argument, a config key or value, a checkpoint, a
TensorFlow checkpoint) is one line on stderr, ``deepfill-min: error: ...``, with exit status 2 and no traceback;
warnings are one line too (``deepfill-min: warning: ...``). An unexpected exception, a bug of ours, still shows its
traceback. Every output is written atomically once all the work has succeeded, so a command that fails writes
nothing; in folder mode a bad pair does not stop the others, and the failures are listed at the end.
"""

from __future__ import annotations

import argparse
import gc
import math
import sys
import warnings
from pathlib import Path

import yaml

from .files import check_folder_out
from .images import one_line


class Parser(argparse.ArgumentParser):
    """argparse with its usage errors on one line, like every other error of the command."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"deepfill-min: error: {message} (see {self.prog} --help)\n")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def cmd_attention_demo(args: argparse.Namespace) -> int:
    from .demo import attention_demo  # noqa: PLC0415  (keep `deepfill-min --help` fast)
    from .holdout import figure_format  # noqa: PLC0415

    figure_format(args.out)
    if args.softmax_scale <= 0:
        raise ValueError(f"--softmax-scale must be above 0, got {args.softmax_scale}")
    path = attention_demo(tuple(args.image), args.size, tuple(args.hole) if args.hole else None, args.passes,
                          args.softmax_scale, args.out)  # fmt: skip
    print(f"wrote {path}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .config import make_config  # noqa: PLC0415
    from .experiment import config_from_run, train_and_evaluate  # noqa: PLC0415

    run_dir = check_folder_out(args.run_dir or f"runs/{args.preset}", "--run-dir")
    if args.resume:
        cfg = config_from_run(run_dir, args.overrides)
    else:
        cfg = make_config(args.preset, args.config, args.overrides)
    from .distributed import close  # noqa: PLC0415
    from .train import NonFiniteLoss  # noqa: PLC0415

    try:
        report = train_and_evaluate(cfg, run_dir, resume=args.resume)
    except NonFiniteLoss as err:
        print(f"deepfill-min: error: {err}", file=sys.stderr)
        return 2
    finally:
        close()  # leave the torchrun process group (a no-op in one process)
    if "initial" in report:
        print(f"held-out hole L1 ([0, 1] scale, {cfg.hole_size[0]}x{cfg.hole_size[1]} centred holes):")
        print(f"  untrained generator  {report['initial']['model']:.4f}")
        print(f"  after {report['step']:>5} steps    {report['final']['model']:.4f}")
        print(f"  trivial fill         {report['final']['mean_fill']:.4f}  (mean colour of the known pixels)")
    print(f"run directory: {run_dir} (holdout.png, samples/, log.csv, checkpoints)")
    return 0


def cmd_inpaint(args: argparse.Namespace) -> int:
    from tqdm import tqdm  # noqa: PLC0415

    from .config import resolve_device  # noqa: PLC0415
    from .pairs import inpaint_job, plan_jobs  # noqa: PLC0415
    from .weights import load_generator  # noqa: PLC0415

    device = resolve_device(args.device)
    jobs, failures = plan_jobs(Path(args.image), Path(args.mask), Path(args.out), args.coarse_out, args.flow_out)
    generator, color_order = load_generator(args.checkpoint, device)
    if args.flow_out and not generator.attention:
        raise ValueError(f"--flow-out needs a generator with contextual attention; {args.checkpoint} has none")
    channel = int(args.mask_channel) if args.mask_channel.isdigit() else args.mask_channel
    folder, total = Path(args.image).is_dir(), len(jobs) + len(failures)
    for job in tqdm(jobs, disable=None if folder else True, unit="image"):
        try:
            inpaint_job(job, generator, color_order, args.threshold, channel, args.official, args.full)
        except (ValueError, OSError) as err:
            if not folder:
                raise
            failures.append(f"{job.image.name}: {one_line(err)}")
    if failures:
        for line in failures:
            print(f"deepfill-min: error: {line}", file=sys.stderr)
        print(f"deepfill-min: error: {len(failures)} of {total} images failed; the other {total - len(failures)} "
              f"were written to {args.out}", file=sys.stderr)  # fmt: skip
        return 2
    print(f"wrote {args.out}")
    return 0


def cmd_app(args: argparse.Namespace) -> int:
    from .app import AppServer  # noqa: PLC0415
    from .config import resolve_device  # noqa: PLC0415
    from .explorer import Explorer  # noqa: PLC0415
    from .weights import load_generator  # noqa: PLC0415

    if not 0 <= args.port < 65536:
        raise ValueError(f"--port must be from 0 to 65535, got {args.port}")
    generator, color_order = load_generator(args.checkpoint, resolve_device(args.device))
    try:
        name = args.checkpoint if args.checkpoint == "builtin" else Path(args.checkpoint).name  # not the whole path
        server = AppServer(Explorer(generator, color_order, args.max_side), args.host, args.port, name)
    except OSError as err:
        raise ValueError(f"cannot serve on {args.host}:{args.port}: {one_line(err)}") from None
    print(f"deepfill-min app: serving {args.checkpoint} on {server.url} (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


def check_sizes(image_size: list[int], hole_size: list[int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """--image-size and --hole-size as tuples, checked (multiples of 8 of at least 16; a hole smaller than that)."""
    size, hole = tuple(image_size), tuple(hole_size)
    if any(s < 16 or s % 8 for s in size):
        raise ValueError(f"--image-size must be two multiples of 8 of at least 16, got {list(size)}")
    if any(h >= s for h, s in zip(hole, size, strict=True)):
        raise ValueError(f"--hole-size {list(hole)} must be smaller than --image-size {list(size)}")
    return size, hole


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate, evaluation_images, write_tables  # noqa: PLC0415
    from .weights import load_generator  # noqa: PLC0415

    out = check_folder_out(args.out, "--out")
    size, hole = check_sizes(args.image_size, args.hole_size)
    generators = {}
    for item in args.checkpoint:
        label, sep, path = item.partition("=")
        if not sep or Path(item).exists():
            label, path = (Path(item).name if len(args.checkpoint) > 1 else ""), item
        if label in generators:
            raise ValueError(f"--checkpoint label {label!r} is given twice; name them LABEL=PATH")
        generators[label] = load_generator(path)[0]
    images, families = evaluation_images(args.data, size, args.n)
    rows = evaluate(generators, images, hole, families)
    csv_path, md_path = write_tables(rows, out)
    print(md_path.read_text())
    print(f"wrote {csv_path} and {md_path}")
    return 0


def cmd_holdout(args: argparse.Namespace) -> int:
    import torch  # noqa: PLC0415

    from .evaluate import evaluation_images, evaluation_masks  # noqa: PLC0415
    from .holdout import figure_format, save_samples  # noqa: PLC0415
    from .weights import load_generator  # noqa: PLC0415

    figure_format(args.out)
    size, hole = check_sizes(args.image_size, args.hole_size)
    generator, _ = load_generator(args.checkpoint)
    images, _ = evaluation_images("builtin", size, args.n)
    masks = torch.cat(evaluation_masks(len(images), size, hole)["random box"])
    title = f"held-out images, {hole[0]}x{hole[1]} boxes at the evaluation's places ({args.checkpoint})"
    print(f"wrote {save_samples(generator, images, masks, args.out, title)}")
    return 0


def cmd_convert_tf(args: argparse.Namespace) -> int:
    from .convert_tf import convert_to_file  # noqa: PLC0415

    print(f"wrote {convert_to_file(args.checkpoint, args.out)} (colour order BGR, as the official models)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .weights import export_generator  # noqa: PLC0415

    print(f"wrote {export_generator(args.source, args.out)} (the generator alone; config and colour order in its "
          "metadata)")  # fmt: skip
    return 0


def cmd_prepare_data(args: argparse.Namespace) -> int:
    from .prepare import prepare_data  # noqa: PLC0415

    flist = prepare_data(args.src, args.dst, args.size, args.workers, args.overwrite)
    print(f"wrote {len(flist.read_text().splitlines())} images and {flist} (train with data={flist})")
    return 0


def add_size_options(parser: argparse.ArgumentParser, image: list[int], hole: list[int], n: int, n_help: str) -> None:
    """--image-size, --hole-size and --n of the commands that work on held-out images."""
    parser.add_argument("--image-size", type=positive_int, nargs=2, default=image, metavar=("H", "W"))
    parser.add_argument("--hole-size", type=positive_int, nargs=2, default=hole, metavar=("H", "W"))
    parser.add_argument("--n", type=positive_int, default=n, help=n_help)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="deepfill-min", description="DeepFill v1 with contextual attention.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("attention-demo", help="fill holes in built-in images with pixel-level contextual attention")
    demo.add_argument("--image", nargs="+", default=["bricks", "hopper", "stripes"],
                      help="built-in names (bricks, dots, hopper, landscape, stripes) or image files")  # fmt: skip
    demo.add_argument("--size", type=positive_int, default=128, help="side of the square images (a multiple of 8)")
    demo.add_argument("--hole", type=int, nargs=4, metavar=("TOP", "LEFT", "HEIGHT", "WIDTH"))
    demo.add_argument("--passes", type=positive_int, default=3, help="passes from the diffused fill")
    demo.add_argument("--softmax-scale", type=finite_float, default=30.0, help="λ of those passes")
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
    paint.add_argument("--checkpoint", default="builtin",
                       help="'builtin' (the shipped model, the default), a .safetensors file, a checkpoint .pt, or a "
                            "training run directory")  # fmt: skip
    paint.add_argument("--image", required=True, help="an image, or a folder of images")
    paint.add_argument("--mask", required=True,
                       help="its mask (white = hole), or a folder of masks with the same names (any image suffix)")
    paint.add_argument("--out", required=True, help="the output image (its suffix sets the format), or folder")
    paint.add_argument("--coarse-out", help="also write the coarse (stage 1) result here (a folder in folder mode): "
                       "in the hole, the image around it (with --full: stage 1's output everywhere)")  # fmt: skip
    paint.add_argument("--flow-out", help="also write the attention flow picture here (a folder in folder mode)")
    paint.add_argument("--threshold", type=finite_float, default=127.5, help="mask values above this are holes")
    paint.add_argument("--mask-channel", default="auto", choices=("auto", "alpha", "0", "1", "2"),
                       help="which channel of the mask file holds the hole (default: auto)")  # fmt: skip
    paint.add_argument("--official", action="store_true", help="the official pipeline: crop to 8, BGR, truncation")
    paint.add_argument("--full", action="store_true",
                       help="run the generator on every pixel (default: only what can reach the hole; same result)")
    paint.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    paint.set_defaults(func=cmd_inpaint)

    app = sub.add_parser("app", help="a local web page: draw a hole, see the fill and where attention copied it from")
    app.add_argument("--checkpoint", default="builtin",
                     help="'builtin' (the shipped model, the default), a .safetensors file, a checkpoint .pt, or a "
                          "training run directory (official weights: convert them with convert-tf first)")  # fmt: skip
    app.add_argument("--host", default="127.0.0.1",
                     help="the address to listen on (default: this machine only; the app has no login, so 0.0.0.0 "
                          "serves anyone who can reach this machine)")  # fmt: skip
    app.add_argument("--port", type=int, default=8080, help="the port (0: any free port)")
    app.add_argument("--max-side", type=positive_int, default=2048,
                     help="larger images are refused with an offer to downscale them to this many pixels a side")
    app.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    app.set_defaults(func=cmd_app)

    ev = sub.add_parser("evaluate", help="metrics of a model and its baselines on held-out images (fixed masks)")
    ev.add_argument("--checkpoint", nargs="*", default=[], metavar="[LABEL=]PATH",
                    help="weights files or run directories to compare (none: the baselines only)")  # fmt: skip
    ev.add_argument("--data", default="builtin", help="'builtin' (the held-out split), a folder or a .flist")
    add_size_options(ev, [64, 64], [32, 32], 32, "number of images")
    ev.add_argument("--out", default="runs/evaluation", help="folder for results.md and results.csv")
    ev.set_defaults(func=cmd_evaluate)

    hold = sub.add_parser("holdout", help="a figure of a model's fills of held-out built-in images")
    hold.add_argument("--checkpoint", default="builtin", help="'builtin' (default), a weights file or a run directory")
    add_size_options(hold, [128, 128], [48, 48], 6, "number of images (rows)")
    hold.add_argument("--out", default="runs/holdout.png", help="the figure to write (.png, .jpg, .pdf, .svg)")
    hold.set_defaults(func=cmd_holdout)

    conv = sub.add_parser("convert-tf", help="convert an official TensorFlow v1 checkpoint (no TensorFlow needed)")
    conv.add_argument("checkpoint", help="the checkpoint directory (with its 'checkpoint' file) or a snap-N prefix")
    conv.add_argument("--out", required=True, help="the file to write: .safetensors (to share) or .pt")
    conv.set_defaults(func=cmd_convert_tf)

    export = sub.add_parser("export", help="write a run's or checkpoint's generator alone as .safetensors")
    export.add_argument("source", metavar="RUN_OR_CKPT", help="a training run directory or a checkpoint file")
    export.add_argument("--out", required=True, help="the .safetensors file to write")
    export.set_defaults(func=cmd_export)

    prep = sub.add_parser("prepare-data", help="write a resized copy of a data set once (faster training input)")
    prep.add_argument("src", metavar="SRC", help="a folder of images (recursive) or a .flist")
    prep.add_argument("dst", metavar="DST", help="the folder to write (with DST/files.flist)")
    prep.add_argument("--size", type=positive_int, default=256, help="the short side after resizing (never enlarged)")
    prep.add_argument("--workers", type=positive_int, default=1, help="processes decoding and encoding in parallel")
    prep.add_argument("--overwrite", action="store_true", help="redo files that already exist in DST")
    prep.set_defaults(func=cmd_prepare_data)
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    print(f"deepfill-min: warning: {one_line(message)}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command == "train" and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides += extra  # KEY=VALUE pairs on both sides of an option, e.g. `--run-dir r lr=1e-3`
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    show = warnings.showwarning
    warnings.showwarning = _one_line_warning
    try:
        return args.func(args)
    except (ValueError, OSError, yaml.YAMLError) as err:
        print(f"deepfill-min: error: {one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("deepfill-min: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = show


def console() -> int:
    """The ``deepfill-min`` command: `main`, then an exit without the final garbage collection.

    At exit Python collects garbage over every object still alive; with torch imported that walk takes about half a
    second on the project's CPU (longer than reading, inpainting around a small hole and writing a 1024² photo's
    files together, docs/benchmarks.md). The command is done with all of them by then, so they are frozen (moved out
    of the collector's reach, `gc.freeze`) and the process ends without the walk; files are closed and atexit
    handlers run as before.
    """
    code = main()
    gc.freeze()
    return code


if __name__ == "__main__":
    sys.exit(console())
