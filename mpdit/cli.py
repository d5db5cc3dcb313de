"""The `mpdit` command line. Errors print one line on stderr and exit 2, never a traceback."""
import argparse
import json
import sys

from mpdit.models import list_models
from mpdit_kernels import BACKENDS


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump)."""

    def error(self, message):
        raise SystemExit(_fail(self.prog, message))


def _fail(prog: str, message: str) -> int:
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2


def _parse_stages(text: str):
    """'8:14,4:8,2:6' -> ((8, 14), (4, 8), (2, 6))."""
    try:
        return tuple(tuple(int(part) for part in stage.split(":")) for stage in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected patch:depth pairs such as 4:6,2:6") from None


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--model and the create_model overrides, shared by every command that builds a model."""
    parser.add_argument("--model", metavar="NAME", help=f"one of: {', '.join(list_models())}")
    parser.add_argument("--fine-depth", type=int, metavar="K", help="blocks in the finest stage (k)")
    parser.add_argument("--class-tokens", type=int, metavar="M", help="class tokens m (0 = DiT's single vector)")
    parser.add_argument("--time-embed", choices=("mlp", "fno"))
    parser.add_argument("--shared-adaln", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--no-skip", dest="skip", action="store_false", default=None,
                        help="no patch embedding of the input at the finer stages")
    parser.add_argument("--latent-size", type=int, metavar="S", help="latent height = width (32 at 256 px)")
    parser.add_argument("--stages", type=_parse_stages, metavar="P:D,...", help="stage schedule, coarse to fine")


def model_overrides(args: argparse.Namespace) -> dict:
    names = ("fine_depth", "class_tokens", "time_embed", "shared_adaln", "skip", "latent_size", "stages")
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def run_flops(args: argparse.Namespace) -> int:
    from mpdit.flops import audit, row_dict
    from mpdit.flops_report import LEGEND, PAPER_NOTE, format_table, paper_report

    overrides = model_overrides(args)
    if args.model is None and overrides:
        raise ValueError(f"--{next(iter(overrides)).replace('_', '-')} needs --model NAME")
    rows = [row_dict(audit(args.model, device=args.device, **overrides))] if args.model \
        else paper_report(device=args.device)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(format_table(rows))
        print()
        print(LEGEND)
        if args.model is None:
            print(PAPER_NOTE)
    return 0


def _csv_list(text: str) -> list:
    return [item for item in text.split(",") if item]


def run_bench(args: argparse.Namespace) -> int:
    from mpdit.bench.runner import run

    outcome = run(args.preset, device=args.device, out=args.out, models=args.models, providers=args.providers,
                  sections=args.sections, progress=not args.no_progress, plots=not args.no_plots)
    print(outcome["markdown"])
    print(f"\nwrote {outcome['json']}, {outcome['csv']}" + "".join(f", {p}" for p in outcome["plots"]))
    return 1 if outcome["results"].errors else 0


def _int_list(text: str) -> list:
    try:
        return [int(item) for item in text.split(",") if item]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated integers such as 0,1,2") from None


def run_train(args: argparse.Namespace) -> int:
    from mpdit.training.checkpoint import CheckpointError
    from mpdit.training.trainer import TrainConfig, TrainingError, train

    config = TrainConfig(
        model=args.model, dataset=args.dataset, steps=args.steps, global_batch_size=args.global_batch_size,
        run_dir=args.run_dir, resume=args.resume, image_size=args.image_size, micro_batch_size=args.micro_batch_size,
        lr=args.lr, warmup_steps=args.warmup_steps, grad_clip=args.grad_clip, ema_decay=args.ema_decay,
        time_sampler=args.time_sampler, time_mean=args.time_mean, time_std=args.time_std,
        class_dropout=args.class_dropout, seed=args.seed, compile=args.compile, parallel=args.parallel,
        kernel_backend=args.kernel_backend,
        precision=args.precision, on_nonfinite=args.on_nonfinite, checkpoint_every=args.checkpoint_every,
        log_every=args.log_every, sample_every=args.sample_every, num_workers=args.num_workers,
        overrides=model_overrides(args))
    try:
        final = train(config)
    except (TrainingError, CheckpointError) as error:
        raise ValueError(str(error)) from None
    print(json.dumps(final))
    return 0


def run_extract(args: argparse.Namespace) -> int:
    from mpdit.training.latents import extract_latents
    from mpdit.training.trainer import init_world

    world = init_world()
    result = extract_latents(args.images, args.out, vae=args.vae, image_size=args.image_size,
                             normalisation=args.normalisation, flip=args.flip, batch_size=args.batch_size,
                             rank=world.rank, world=world.size, device=world.device, seed=args.seed)
    print(json.dumps({k: v for k, v in result.items() if k != "classes"}))
    return 0


def run_export_ema(args: argparse.Namespace) -> int:
    from mpdit.training import checkpoint

    print(checkpoint.export_ema_safetensors(checkpoint.load(args.checkpoint), args.out))
    return 0


def run_sample(args: argparse.Namespace) -> int:
    from mpdit.training.sample_checkpoint import sample_checkpoint

    result = sample_checkpoint(args.checkpoint, args.out, classes=args.classes, per_class=args.per_class,
                               cfg_scale=args.cfg_scale, steps=args.steps, method=args.method,
                               guidance_interval=(args.guidance_low, args.guidance_high), seed=args.seed,
                               use_ema=not args.no_ema, vae=args.vae)
    print(json.dumps(result))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mpdit", description="MPDiT engine: models, FLOP audit, sampling.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    flops = commands.add_parser("flops", help="parameters and GFLOPs, against the paper's tables")
    add_model_arguments(flops)
    flops.add_argument("--json", action="store_true", help="print JSON instead of a table")
    flops.add_argument("--device", default="meta", choices=("meta", "cpu"),
                       help="meta: count shapes without weights (default); cpu: a forward on real tensors")
    flops.set_defaults(handler=run_flops)

    from mpdit.bench.presets import PRESETS, SECTIONS

    bench = commands.add_parser("bench", help="speed, memory and FLOPs of MPDiT against DiT/SiT, per kernel backend",
                                description="; ".join(f"{p.name}: {p.description}" for p in PRESETS.values()))
    bench.add_argument("--preset", default="default", choices=list(PRESETS))
    bench.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when present")
    bench.add_argument("--out", metavar="DIR", help="results folder (default benchmarks/results/<date>-<device>-<preset>)")
    bench.add_argument("--models", type=_csv_list, metavar="A,B", help="a subset of the preset's models")
    bench.add_argument("--providers", type=_csv_list, metavar="A,B", help="torch, compile, triton, triton+compile, cuda")
    bench.add_argument("--sections", type=_csv_list, metavar="A,B", help=", ".join(SECTIONS))
    bench.add_argument("--no-progress", action="store_true", help="no progress bar")
    bench.add_argument("--no-plots", action="store_true", help="JSON and CSV only")
    bench.set_defaults(handler=run_bench)

    train = commands.add_parser("train", help="flow-matching training (one process or torchrun), resumable")
    add_model_arguments(train)
    train.add_argument("--dataset", required=True, metavar="digits|PATH",
                       help="'digits' (scikit-learn's, no download) or a folder of latent shards")
    train.add_argument("--steps", type=int, required=True)
    train.add_argument("--global-batch-size", type=int, required=True)
    train.add_argument("--run-dir", required=True)
    train.add_argument("--resume", metavar="auto|PATH", help="'auto': the latest checkpoint in --run-dir")
    train.add_argument("--image-size", type=int, default=16, help="digits: 16 or 32 pixels")
    train.add_argument("--micro-batch-size", type=int, help="per process; accumulates up to the global batch")
    train.add_argument("--lr", type=float, default=1e-4)
    train.add_argument("--warmup-steps", type=int, default=0)
    train.add_argument("--grad-clip", type=float, default=1.0)
    train.add_argument("--ema-decay", type=float, default=0.9999)
    train.add_argument("--time-sampler", default="logit_normal", choices=("logit_normal", "uniform"))
    train.add_argument("--time-mean", type=float, default=0.0)
    train.add_argument("--time-std", type=float, default=1.0)
    train.add_argument("--class-dropout", type=float, default=0.1)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--compile", action="store_true")
    train.add_argument("--parallel", default="ddp", choices=("ddp", "fsdp"), help="under torchrun; fsdp = FSDP2")
    train.add_argument("--kernel-backend", default="auto", choices=BACKENDS)
    train.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    train.add_argument("--on-nonfinite", default="stop", choices=("stop", "skip"))
    train.add_argument("--checkpoint-every", type=int, default=1000)
    train.add_argument("--log-every", type=int, default=10)
    train.add_argument("--sample-every", type=int, default=1000, help="PNG grid of EMA samples; 0 = never")
    train.add_argument("--num-workers", type=int, default=2)
    train.set_defaults(handler=run_train)

    sample = commands.add_parser("sample", help="images from a training checkpoint: .npz (ADM layout) + PNG grid")
    sample.add_argument("--checkpoint", required=True)
    sample.add_argument("--out", required=True, metavar="FILE.npz")
    sample.add_argument("--classes", type=_int_list, help="comma-separated labels (default: 10 random ones)")
    sample.add_argument("--per-class", type=int, default=1)
    sample.add_argument("--cfg-scale", type=float, default=1.0)
    sample.add_argument("--steps", type=int, default=50)
    sample.add_argument("--method", default="euler", choices=("euler", "heun", "dopri5", "euler_maruyama"))
    sample.add_argument("--guidance-low", type=float, default=0.0)
    sample.add_argument("--guidance-high", type=float, default=1.0)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--no-ema", action="store_true", help="the raw weights instead of the EMA")
    sample.add_argument("--vae", help="latent runs: decode with this VAE (default: the one in latents.json)")
    sample.set_defaults(handler=run_sample)

    export = commands.add_parser("export-ema", help="a checkpoint's EMA weights as safetensors")
    export.add_argument("--checkpoint", required=True)
    export.add_argument("--out", required=True, metavar="FILE.safetensors")
    export.set_defaults(handler=run_export_ema)

    extract = commands.add_parser("extract-latents", help="encode an ImageFolder into latent shards (diffusers VAE)")
    extract.add_argument("--images", required=True, help="ImageFolder: one sub-folder per class")
    extract.add_argument("--out", required=True, help="folder for the shards and latents.json")
    extract.add_argument("--vae", default="stabilityai/sd-vae-ft-ema", help="hub name or local path")
    extract.add_argument("--image-size", type=int, default=256)
    extract.add_argument("--normalisation", default="scale", choices=("scale", "channel"),
                         help="scale: x 0.18215; channel: the per-channel mean/std of the MPDiT code")
    extract.add_argument("--flip", action="store_true", help="also store horizontally flipped copies")
    extract.add_argument("--batch-size", type=int, default=32)
    extract.add_argument("--seed", type=int, default=0)
    extract.set_defaults(handler=run_extract)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.handler(args)
    except ValueError as error:
        return _fail(f"mpdit {args.command}", str(error))
