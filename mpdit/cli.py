"""The `mpdit` command line. Errors print one line on stderr and exit 2, never a traceback
(MPDIT_DEBUG=1 shows it).

Process-wide settings are chosen here, once, at the entry: TF32 matrix products on GPU
(the library functions leave such settings as they find them).
"""
import argparse
import dataclasses
import json
import os
import sys
import typing

import torch

from mpdit.models import ModelConfig, list_models


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump)."""

    def error(self, message):
        raise SystemExit(_fail(self.prog, message))


class _DefaultsHelp(argparse.HelpFormatter):
    """Help that shows each option's default where it has one."""

    def _get_help_string(self, action):
        text = action.help or ""
        flag = isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))  # default: not given
        if action.option_strings and action.default not in (None, argparse.SUPPRESS) and not flag \
                and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


def _fail(prog: str, message: str) -> int:
    # One write of the whole line: under torchrun every worker may say it into the same pipe, where
    # print's two writes (text, then newline) interleave ("...3 processesmpdit train: error: ...").
    sys.stderr.write(f"{prog}: error: {message}\n")
    sys.stderr.flush()
    return 2


def parse_stages(text: str):
    """'8:14,4:8,2:6' -> ((8, 14), (4, 8), (2, 6))."""
    try:
        return tuple(tuple(int(part) for part in stage.split(":")) for stage in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected patch:depth pairs such as 4:6,2:6") from None


def _model_options() -> list:
    """The ModelConfig fields marked overridable with a help text: the model options."""
    return [spec for spec in dataclasses.fields(ModelConfig) if spec.metadata.get("override")
            and spec.metadata.get("help")]


def add_model_arguments(parser: argparse.ArgumentParser, required: bool = False) -> None:
    """--model, --fine-depth and one option per overridable ModelConfig field that has a help text
    (mpdit.models.transformer.overridable): shared by every command that builds a model."""
    parser.add_argument("--model", metavar="NAME", required=required, help=f"one of: {', '.join(list_models())}")
    parser.add_argument("--fine-depth", type=int, metavar="K", help="blocks in the finest stage (k), total depth kept")
    hints = typing.get_type_hints(ModelConfig)
    for spec in _model_options():
        meta = {key: value for key, value in spec.metadata.items() if key != "override"}
        kind = hints[spec.name]
        kwargs = {"action": argparse.BooleanOptionalAction} if kind is bool else \
            {"type": parse_stages if spec.name == "stages" else kind}
        # default None: a value only when given, so the registered size's own value stands otherwise
        parser.add_argument("--" + spec.name.replace("_", "-"), dest=spec.name, default=None, **kwargs, **meta)


def overrides_from_args(args: argparse.Namespace) -> dict:
    """The create_model overrides given on the command line."""
    names = ["fine_depth"] + [spec.name for spec in _model_options()]
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def add_config_arguments(parser: argparse.ArgumentParser, config_class, exclude=(), optional: bool = False) -> None:
    """One --option per field of a config dataclass, with the field's type, default, choices and
    help, so that each default lives in the dataclass. Fields marked cli=False, and `exclude`, are
    left out; `optional`: the fields without a default are not required here (the caller checks)."""
    hints = typing.get_type_hints(config_class)
    for spec in dataclasses.fields(config_class):
        meta = dict(spec.metadata)
        if not meta.pop("cli", True) or spec.name in exclude:
            continue
        kind = hints[spec.name]
        if typing.get_origin(kind) is typing.Union:  # Optional[X]
            kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
        kwargs = {"dest": spec.name, **meta}
        if spec.default is dataclasses.MISSING:
            kwargs["required"] = not optional
        else:
            kwargs["default"] = spec.default
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs.setdefault("type", kind)  # a field's own parser (a comma-separated list) where it names one
        parser.add_argument("--" + spec.name.replace("_", "-"), **kwargs)


def config_from_args(config_class, args: argparse.Namespace, **given):
    """The config dataclass from the parsed options; `given` supplies the fields with cli=False."""
    names = [spec.name for spec in dataclasses.fields(config_class) if spec.name not in given]
    return config_class(**{name: getattr(args, name) for name in names}, **given)


def add_input(parser: argparse.ArgumentParser, help: str) -> None:
    """The file a command reads, given the same way in every command: CHECKPOINT (positional);
    --checkpoint is the older spelling, still accepted."""
    parser.add_argument("checkpoint", metavar="CHECKPOINT", nargs="?", help=help)
    parser.add_argument("--checkpoint", dest="checkpoint_option", metavar="CHECKPOINT",
                        help="the same as CHECKPOINT (the older spelling)")


def input_path(args: argparse.Namespace) -> str:
    """CHECKPOINT or --checkpoint, exactly one of them."""
    given = [path for path in (args.checkpoint, args.checkpoint_option) if path is not None]
    if len(given) != 1:
        raise ValueError("CHECKPOINT: expected one input file" + (", given twice (positional and --checkpoint)"
                                                                  if given else ""))
    return given[0]


def run_flops(args: argparse.Namespace) -> int:
    from mpdit.audit.flops import audit, row_dict
    from mpdit.audit.report import LEGEND, PAPER_NOTE, format_table, paper_report

    overrides = overrides_from_args(args)
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
    from mpdit.bench.plan import BenchRequest, RunOptions
    from mpdit.bench.runner import BenchInterrupted, run

    plan = config_from_args(BenchRequest, args).plan()
    options = config_from_args(RunOptions, args)
    try:
        outcome = run(plan, options)
    except BenchInterrupted as stop:  # the files are written; 128 + signal, as a shell reports it
        print(f"mpdit bench: {stop}", file=sys.stderr)
        return 128 + stop.signum
    print(outcome["markdown"])
    print(f"\nwrote {outcome['json']}, {outcome['csv']}, {outcome['markdown_path']}"
          + "".join(f", {p}" for p in outcome["plots"]))
    return 1 if outcome["results"].errors else 0


def _int_list(text: str) -> list:
    try:
        values = [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        values = []
    if not values:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated integers such as 0,1,2")
    return values


def run_train(args: argparse.Namespace) -> int:
    from mpdit.io import CheckpointError
    from mpdit.training.config import TrainConfig
    from mpdit.training.step import TrainingError
    from mpdit.training.trainer import TrainingStopped, train

    config = config_from_args(TrainConfig, args, model=args.model, overrides=overrides_from_args(args))
    try:
        final = train(config)
    except TrainingStopped as stop:  # the checkpoint is written; 128 + signal, as a shell reports it
        print(f"mpdit train: {stop}", file=sys.stderr)
        return 128 + stop.signum
    except (TrainingError, CheckpointError) as error:
        raise ValueError(str(error)) from None
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun: once, not once per process
        print(json.dumps(final))
    return 0


def run_ablation(args: argparse.Namespace) -> int:
    from mpdit.ablation import AblationConfig, format_rows, format_table, run_ablation
    from mpdit.ablation.config import PER_ROW
    from mpdit.io import CheckpointError
    from mpdit.training.config import TrainConfig
    from mpdit.training.step import TrainingError
    from mpdit.training.trainer import TrainingStopped

    training = {spec.name: getattr(args, spec.name) for spec in dataclasses.fields(TrainConfig)
                if spec.name not in PER_ROW}
    config = config_from_args(AblationConfig, args, training=training)
    try:
        rows = run_ablation(config)
    except TrainingStopped as stop:  # the row's checkpoint is written; the same command continues
        print(f"mpdit ablation: {stop}; run the same command again to continue", file=sys.stderr)
        return 128 + stop.signum
    except (TrainingError, CheckpointError) as error:
        raise ValueError(str(error)) from None
    if int(os.environ.get("RANK", "0")):  # under torchrun: rank 0 prints
        return 0
    if args.json:
        print(json.dumps(rows))
    elif config.dry_run:
        print(format_rows(rows))
    else:
        from mpdit.ablation.runner import RESULTS
        from mpdit.io import jsonl

        print(format_table(rows, jsonl.read(os.path.join(config.out, RESULTS))))
    return 0


def run_extract(args: argparse.Namespace) -> int:
    from mpdit.data.latents import extract_latents
    from mpdit.world import joined_world

    with joined_world() as world:
        result = extract_latents(args.images, args.out, vae=args.vae, image_size=args.image_size,
                                 normalisation=args.normalisation, flip=args.flip, batch_size=args.batch_size,
                                 rank=world.rank, world=world.size, device=world.device, seed=args.seed,
                                 strict=args.strict)
    print(json.dumps({k: v for k, v in result.items() if k != "classes"}))
    return 0


def run_export_ema(args: argparse.Namespace) -> int:
    from mpdit.io import check_output, export_ema, load_checkpoint

    source = input_path(args)
    check_output(args.out, ".safetensors", inputs=[source])  # before reading a multi-GB checkpoint
    state = load_checkpoint(source)
    out = export_ema(state, args.out, source=f"checkpoint={source!r}")
    print(json.dumps({"out": out, "model": state["train_config"]["model"], "step": state["step"],
                      "tensors": len(state["ema"])}))
    return 0


def run_convert(args: argparse.Namespace) -> int:
    from mpdit.compat.convert import convert_to_native, convert_to_official

    if args.source:
        if args.model is None:
            raise ValueError("--model: --from needs the official model name (e.g. DiT-XL/2, MPDiT-XL/4x)")
        result = convert_to_native(input_path(args), args.source, args.model, args.out, weights=args.weights)
    else:
        result = convert_to_official(input_path(args), args.target, args.out, name=args.model)
    print(json.dumps(result))
    return 0


def run_sample(args: argparse.Namespace) -> int:
    from mpdit.inference.sample_checkpoint import sample_checkpoint

    result = sample_checkpoint(input_path(args), args.out, classes=args.classes, per_class=args.per_class,
                               cfg_scale=args.cfg_scale, steps=args.steps, method=args.method,
                               guidance_interval=(args.guidance_low, args.guidance_high), seed=args.seed,
                               use_ema=not args.no_ema, vae=args.vae, cuda_graph=args.cuda_graph,
                               num_samples=args.num_samples, random_classes=args.random_classes,
                               batch_size=args.batch_size, resume=args.resume, eval_ref=args.eval,
                               inception_weights=args.inception_weights, progress=not args.no_progress,
                               latents_only=args.latents_only)
    print(json.dumps(result))
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from mpdit.io import check_output

    if args.json:
        check_output(args.json, ".json", inputs=args.files)
    if args.make_ref:
        from mpdit.evaluation import make_reference

        if args.files or not args.out:
            raise ValueError("--make-ref: takes no positional files and needs --out REF.npz")
        if args.features == "digits":
            raise ValueError("--features digits: the digits figures need no reference (--make-ref writes Inception "
                             "statistics, and DINOv2's with --features dinov2)")
        result = make_reference(args.make_ref, args.out, image_size=args.image_size, count=args.ref_images,
                                inception_weights=args.inception_weights, batch_size=args.batch_size,
                                device=args.device, progress=not args.no_progress,
                                dinov2=args.features == "dinov2", dinov2_weights=args.dinov2_weights)
        print(json.dumps(result))
        return 0
    if args.out or args.image_size:
        raise ValueError("--out / --image-size: only with --make-ref (the metrics go to stdout and --json)")
    if args.features == "digits":
        from mpdit.evaluation.digits import evaluate_digits, format_digits

        if len(args.files) != 1:
            raise ValueError(f"--features digits: expected one SAMPLES.npz, got {len(args.files)} files")
        result = evaluate_digits(args.files[0])
        text = format_digits(result)
    elif args.features == "dinov2":
        from mpdit.evaluation.dinov2 import evaluate_dinov2, format_dinov2

        if len(args.files) != 2:
            raise ValueError(f"--features dinov2: expected REF.npz SAMPLES.npz, got {len(args.files)} file(s)")
        result = evaluate_dinov2(args.files[0], args.files[1], dinov2_weights=args.dinov2_weights,
                                 batch_size=args.batch_size, device=args.device, progress=not args.no_progress,
                                 warn=_note("mpdit eval"))
        text = format_dinov2(result)
    else:
        from mpdit.evaluation import evaluate, format_result

        if len(args.files) != 2:
            raise ValueError(f"expected REF.npz SAMPLES.npz, got {len(args.files)} file(s)")
        result = evaluate(args.files[0], args.files[1], inception_weights=args.inception_weights,
                          batch_size=args.batch_size, device=args.device, progress=not args.no_progress,
                          cache=not args.no_cache, warn=_note("mpdit eval"))
        text = format_result(result)
    print(text)
    if args.json:
        write_json(args.json, result)
    return 0


def _note(prog: str):
    """A printer of one-line notes on stderr."""
    return lambda text: print(f"{prog}: note: {text}", file=sys.stderr)


def write_json(path: str, result: dict) -> None:
    from mpdit.io import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mpdit", description="MPDiT engine: flops (FLOP audit against the paper), bench (speed, "
                                              "memory, profiles), train (flow matching, one GPU to many), ablation "
                                              "(the paper's ablation tables, trained), sample, "
                                              "eval (sample quality), export-ema, extract-latents, convert (official "
                                              "DiT/SiT/MPDiT "
                                              "checkpoints).")
    # every subcommand's help shows its defaults
    commands = parser.add_subparsers(dest="command", metavar="COMMAND",
                                     parser_class=lambda **kw: _Parser(formatter_class=_DefaultsHelp, **kw))
    flops = commands.add_parser("flops", help="parameters and GFLOPs, against the paper's tables")
    add_model_arguments(flops)
    flops.add_argument("--json", action="store_true", help="print JSON instead of a table")
    flops.add_argument("--device", default="meta", choices=("meta", "cpu"),
                       help="meta: count shapes without weights; cpu: a forward on real tensors")
    flops.set_defaults(handler=run_flops)

    from mpdit.bench.plan import BenchRequest, RunOptions
    from mpdit.bench.presets import PRESETS

    bench = commands.add_parser("bench", help="speed, memory and FLOPs of MPDiT against DiT/SiT, per kernel backend",
                                description="; ".join(f"{p.name}: {p.description}" for p in PRESETS.values()))
    add_config_arguments(bench, BenchRequest)
    add_config_arguments(bench, RunOptions)
    bench.set_defaults(handler=run_bench)

    from mpdit.training.config import TrainConfig

    train = commands.add_parser("train", help="flow-matching training (one process or torchrun), resumable")
    add_model_arguments(train, required=True)
    add_config_arguments(train, TrainConfig)
    train.set_defaults(handler=run_train)

    from mpdit.ablation import AblationConfig
    from mpdit.ablation.config import PER_ROW

    ablation = commands.add_parser(
        "ablation", help="the paper's ablation tables (1: components, 4: fine depth k) trained, sampled and "
                         "evaluated, beside the paper's figures",
        description="Each row of the table is trained with the training options below (the same for every row: "
                    "--steps, --global-batch-size, --lr, ... as in mpdit train), evaluated every --eval-every steps "
                    "(0: once, at the end) against --eval-ref, once per seed. Results stream into --out; a killed "
                    "command continues there. The table and JSON go to stdout.")
    add_config_arguments(ablation, AblationConfig)
    add_config_arguments(ablation, TrainConfig, exclude=PER_ROW, optional=True)
    ablation.add_argument("--json", action="store_true", help="print JSON instead of the table")
    ablation.set_defaults(handler=run_ablation)

    from mpdit.inference.api import METHODS

    sample = commands.add_parser("sample", help="images from a training checkpoint or an EMA export: .npz (ADM "
                                                "layout) + PNG grid")
    add_input(sample, "a training checkpoint (.pt), an `mpdit export-ema` file or a converted official checkpoint "
                      "(.safetensors)")
    sample.add_argument("--out", required=True, metavar="FILE.npz", help="the images (arr_0, uint8 NHWC, the ADM "
                        "evaluator's layout) and labels; a PNG grid is written beside it")
    sample.add_argument("--classes", type=_int_list, help="comma-separated labels (default: 10 random ones with "
                        "--per-class, every class with --num-samples)")
    sample.add_argument("--per-class", type=int, metavar="K", help="K samples of each class in --classes (default 1)")
    sample.add_argument("--num-samples", type=int, metavar="N",
                        help="exactly N samples (e.g. 50000 for FID-50K), classes balanced: N // C of each of the C "
                             "classes and one more of the first N %% C; instead of --per-class")
    sample.add_argument("--random-classes", action="store_true",
                        help="with --num-samples: each image's class drawn uniformly (DiT's sample_ddp.py)")
    sample.add_argument("--resume", action="store_true",
                        help="continue a killed run from the shards in FILE.shards/ (the same settings)")
    sample.add_argument("--eval", metavar="REF.npz", help="evaluate the result against this reference batch "
                        "(mpdit eval) and write FILE.metrics.json")
    sample.add_argument("--inception-weights", metavar="FILE", help="--eval: the Inception weights (see mpdit eval)")
    sample.add_argument("--no-progress", action="store_true", help="no progress bar")
    sample.add_argument("--batch-size", type=int, default=64, help="samples per model call (per process)")
    sample.add_argument("--cfg-scale", type=float, default=1.0, help="classifier-free guidance scale w; 1 = none")
    sample.add_argument("--steps", type=int, default=50, help="sampler steps (ddpm: respaced steps)")
    sample.add_argument("--method", choices=METHODS,
                        help="default: euler; ddpm (DiT's sampler, --steps respaced steps, e.g. 250) for a file "
                             "converted from DiT")
    sample.add_argument("--guidance-low", type=float, default=0.0, help="guide only for t >= this")
    sample.add_argument("--guidance-high", type=float, default=1.0, help="guide only for t <= this")
    sample.add_argument("--seed", type=int, default=0, help="image i depends on (seed, i) only, not on the batch "
                        "size or the number of processes (the SDE sampler's later noise: also on the batch)")
    sample.add_argument("--no-ema", action="store_true", help="the raw weights instead of the EMA")
    sample.add_argument("--cuda-graph", action="store_true",
                        help="euler / heun: replay each model evaluation from a CUDA graph (GPU only)")
    sample.add_argument("--vae", help="latent runs: decode with this VAE (default: the one in latents.json)")
    sample.add_argument("--latents-only", action="store_true",
                        help="latent runs: keep the samples as latents (`latents`, float32 N x C x H x W, with labels; "
                             "no VAE, no grid), to decode later with mpdit.decode")
    sample.set_defaults(handler=run_sample)

    evaluation = commands.add_parser(
        "eval", help="IS, FID, sFID, precision, recall of samples against an ADM reference batch (the ADM "
                     "evaluator's definitions, PyTorch Inception)",
        description="mpdit eval REF.npz SAMPLES.npz | --make-ref IMAGES_DIR_OR_NPZ --out REF.npz | "
                    "--features digits SAMPLES.npz | --features dinov2 REF.npz SAMPLES.npz. Inception weights: "
                    "--inception-weights (torch-fidelity's .pth, or NVIDIA's TorchScript .pt), "
                    "$MPDIT_INCEPTION_WEIGHTS or torch's hub cache (downloaded there when online); features are "
                    "cached in $MPDIT_CACHE_DIR (default ~/.cache/mpdit/features).")
    evaluation.add_argument("files", nargs="*", metavar="FILE.npz", help="REF.npz SAMPLES.npz (arr_0: uint8 NHWC)")
    evaluation.add_argument("--inception-weights", metavar="FILE",
                            help="torch-fidelity's weights-inception-2015-12-05-6726825d.pth, or NVIDIA's TorchScript "
                                 "inception-2015-12-05.pt / default_1.pt (features only: no Inception Score)")
    evaluation.add_argument("--batch-size", type=int, default=64, help="images per Inception call")
    evaluation.add_argument("--device", help="default: cuda when present")
    evaluation.add_argument("--json", metavar="OUT.json", help="also write the result as JSON")
    evaluation.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    evaluation.add_argument("--no-progress", action="store_true", help="no progress bars")
    evaluation.add_argument("--features", choices=("inception", "digits", "dinov2"), default="inception",
                            help="digits: a classifier's features for the CPU digits demo (one SAMPLES.npz); dinov2: "
                                 "FD-DINOv2 (EDM2's), and with --make-ref DINOv2 statistics added to the reference")
    evaluation.add_argument("--dinov2-weights", metavar="FILE",
                            help="--features dinov2: dinov2_vitl14_pretrain.pth (default: $MPDIT_DINOV2_WEIGHTS, or "
                                 "torch's hub cache)")
    evaluation.add_argument("--make-ref", metavar="IMAGES_DIR_OR_NPZ",
                            help="write a reference batch (ADM layout) of these images to --out")
    evaluation.add_argument("--out", metavar="REF.npz", help="--make-ref: the reference batch to write")
    evaluation.add_argument("--image-size", type=int, help="--make-ref of a folder: centre-crop every image to this")
    evaluation.add_argument("--ref-images", type=int, default=10000, help="--make-ref: images kept in arr_0")
    evaluation.set_defaults(handler=run_eval)

    from mpdit.compat.layouts import FAMILIES

    convert = commands.add_parser("convert", help="official DiT / SiT / reference-MPDiT checkpoints to the "
                                                  "engine's .safetensors (--from) and back (--to)")
    add_input(convert, "--from: an official .pt (bare, or train.py's model/ema); --to: an engine .safetensors or "
                       "training checkpoint")
    direction = convert.add_mutually_exclusive_group(required=True)
    direction.add_argument("--from", dest="source", choices=FAMILIES,
                           help="the official code the input comes from: write the engine's .safetensors")
    direction.add_argument("--to", dest="target", choices=FAMILIES,
                           help="the official code to write for: an engine file to its .pt state dict")
    convert.add_argument("--model", metavar="NAME", help="the official name: DiT-XL/2, SiT-XL/2, MPDiT-XL/4x, "
                         "MPDiTv2-XL, ...; required with --from (--to: default, the one --from recorded)")
    convert.add_argument("--out", required=True, metavar="FILE", help="--from: FILE.safetensors; --to: FILE.pt")
    convert.add_argument("--weights", default="ema", choices=("ema", "model"),
                         help="--from a training checkpoint: which weights")
    convert.set_defaults(handler=run_convert)

    export = commands.add_parser("export-ema", help="a checkpoint's EMA weights as safetensors")
    add_input(export, "a training checkpoint (.pt)")
    export.add_argument("--out", required=True, metavar="FILE.safetensors",
                        help="the EMA weights, with the model config in the metadata (mpdit.load reads it)")
    export.set_defaults(handler=run_export_ema)

    extract = commands.add_parser("extract-latents", help="encode an ImageFolder into latent shards (diffusers VAE)")
    extract.add_argument("--images", required=True, help="ImageFolder: one sub-folder per class")
    extract.add_argument("--out", required=True, help="folder for the shards and latents.json")
    extract.add_argument("--vae", default="stabilityai/sd-vae-ft-ema", help="hub name or local path")
    extract.add_argument("--image-size", type=int, default=256,
                         help="every image centre-cropped and resized to this side (ADM's crop) before encoding")
    extract.add_argument("--normalisation", default="scale", choices=("scale", "channel"),
                         help="scale: x 0.18215; channel: the per-channel mean/std of the MPDiT code")
    extract.add_argument("--flip", action="store_true", help="also store horizontally flipped copies")
    extract.add_argument("--batch-size", type=int, default=32, help="images per VAE call (per process)")
    extract.add_argument("--seed", type=int, default=0, help="the noise of the VAE posterior samples stored (each "
                         "process draws from seed + rank)")
    extract.add_argument("--strict", action="store_true", help="stop at an unreadable image (default: skip it with a "
                         "warning and list it in <out>/bad_images.txt)")
    extract.set_defaults(handler=run_extract)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    torch.backends.cuda.matmul.allow_tf32 = True  # TF32 GEMMs and convolutions on GPU, as DiT's and SiT's train.py
    torch.backends.cudnn.allow_tf32 = True
    try:
        return args.handler(args)
    except (ValueError, OSError) as error:  # bad input, or a file system that said no: one line
        if os.environ.get("MPDIT_DEBUG") == "1":  # the traceback, for a bug report
            raise
        return _fail(f"mpdit {args.command}", str(error) or type(error).__name__)
    except KeyboardInterrupt:  # train handles its own signals; elsewhere nothing is half-written
        if os.environ.get("MPDIT_DEBUG") == "1":
            raise
        print(f"mpdit {args.command}: interrupted", file=sys.stderr)
        return 130
