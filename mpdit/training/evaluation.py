"""Evaluation during training (`mpdit train --eval-every`): the EMA samples --eval-samples
images (classes balanced, Euler), every rank its share, into eval/step-N.npz; the main rank
computes the metrics (mpdit eval, or the digits classifier's), logs them into metrics.jsonl and
TensorBoard as eval_*, and removes the images (a 50,000-image file is gigabytes), keeping the
grid. A run killed while sampling continues the same evaluation's shards when resumed.
"""
import os

from mpdit.data import latents_info
from mpdit.evaluation import METRICS, evaluate
from mpdit.evaluation.digits import evaluate_digits
from mpdit.inference.labels import image_labels
from mpdit.inference.npz_writer import write_samples
from mpdit.inference.settings import SampleSettings
from mpdit.training.log import say


def evaluate_ema(run, log) -> dict:
    """Samples and evaluates the EMA at run.step (a collective: every rank calls it); returns the
    record logged (on the main rank; {} elsewhere)."""
    config, world, evaluation = run.config, run.world, run.config.evaluation
    out = os.path.join(config.run_dir, "eval", f"step-{run.step:08d}.npz")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    labels = image_labels(run.model_config["num_classes"], num_samples=evaluation.samples)
    settings = SampleSettings(out, steps=evaluation.steps, cfg_scale=evaluation.cfg_scale, resume=True,
                              batch_size=max(1, config.global_batch_size // world.size), progress=world.main)
    identity = {"run_dir": os.path.abspath(config.run_dir), "step": run.step}
    write_samples(run.train_step.ema, labels, out, world, settings, "euler",
                  None if config.dataset == "digits" else latents_info(config.dataset), identity)
    if not world.main:
        return {}
    if evaluation.ref == "digits":
        result = evaluate_digits(out)
        record = {"eval_fd_digits": result["fd"], "eval_precision": result["precision"],
                  "eval_recall": result["recall"], "eval_fd_digits_floor": result["floor"]["fd"]}
    else:
        result = evaluate(evaluation.ref, out, inception_weights=evaluation.inception_weights, progress=False,
                          warn=lambda text: say(config.run_dir, f"step {run.step} evaluation: {text}"))
        record = {f"eval_{key}": result[key] for key in METRICS if result[key] is not None}
    record = {"step": run.step, **record, "eval_samples": result["num_samples"]}
    log.write(record)
    os.remove(out)
    return record
