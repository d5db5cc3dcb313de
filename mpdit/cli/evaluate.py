"""`mpdit eval`: IS, FID, sFID, precision, recall (or FD-DINOv2, or the digits figures) of samples
against a reference batch, or --make-ref to write one."""
import json

from mpdit.cli.parsing import add_command, note, write_json
from mpdit.options import config_from_args


def add(commands) -> None:
    from mpdit.evaluation.settings import EvalSettings

    add_command(
        commands, "eval", run, EvalSettings,
        help="IS, FID, sFID, precision, recall of samples against an ADM reference batch (the ADM evaluator's "
             "definitions, PyTorch Inception)",
        description="mpdit eval REF.npz SAMPLES.npz | --make-ref IMAGES_DIR_OR_NPZ --out REF.npz | "
                    "--features digits SAMPLES.npz | --features dinov2 REF.npz SAMPLES.npz. Inception weights: "
                    "--inception-weights (torch-fidelity's .pth, or NVIDIA's TorchScript .pt), "
                    "$MPDIT_INCEPTION_WEIGHTS or torch's hub cache (downloaded there when online); features are "
                    "cached in $MPDIT_CACHE_DIR (default ~/.cache/mpdit/features).")


def run(args) -> int:
    from mpdit.evaluation.settings import EvalSettings
    from mpdit.io import check_output

    settings = config_from_args(EvalSettings, args)
    if settings.json:
        check_output(settings.json, ".json", inputs=settings.files)
    mode = settings.mode()
    if mode == "make-ref":
        print(json.dumps(_make_reference(settings)))
        return 0
    result, text = MODES[mode](settings)
    print(text)
    if settings.json:
        write_json(settings.json, result)
    return 0


def _make_reference(settings) -> dict:
    from mpdit.evaluation import make_reference

    return make_reference(settings.make_ref, settings.out, image_size=settings.image_size, count=settings.ref_images,
                          inception_weights=settings.inception_weights, batch_size=settings.batch_size,
                          device=settings.device, progress=settings.progress, dinov2=settings.features == "dinov2",
                          dinov2_weights=settings.dinov2_weights)


def _inception(settings) -> tuple:
    from mpdit.evaluation import evaluate, format_result

    result = evaluate(*settings.files, inception_weights=settings.inception_weights, batch_size=settings.batch_size,
                      device=settings.device, progress=settings.progress, cache=settings.cache,
                      warn=note("mpdit eval"))
    return result, format_result(result)


def _dinov2(settings) -> tuple:
    from mpdit.evaluation.dinov2 import evaluate_dinov2, format_dinov2

    result = evaluate_dinov2(*settings.files, dinov2_weights=settings.dinov2_weights, batch_size=settings.batch_size,
                             device=settings.device, progress=settings.progress, warn=note("mpdit eval"))
    return result, format_dinov2(result)


def _digits(settings) -> tuple:
    from mpdit.evaluation.digits import evaluate_digits, format_digits

    result = evaluate_digits(settings.files[0])
    return result, format_digits(result)


MODES = {"inception": _inception, "dinov2": _dinov2, "digits": _digits}
