"""`mpdit ablation`: every row of a paper table trained, sampled and evaluated by the engine's own
trainer (`mpdit train --eval-every`: the EMA sampled into eval/ and scored by `mpdit eval` or the
digits classifier), once per seed, one line per finished row and seed in results.jsonl.

The folder is resumable: a finished (network, seed) is never trained again, a row cut short
continues from its checkpoint (`--resume auto` of its run folder), and a second command on the
folder while the first runs is refused (ablation.lock). Under torchrun every rank runs the same
rows; rank 0 writes.
"""
import gc
import os
import sys

from mpdit.ablation.config import AblationConfig
from mpdit.ablation.report import read_json, summarize, write_json
from mpdit.ablation.report import write as write_report
from mpdit.ablation.rows import ablation_rows
from mpdit.audit.flops import audit
from mpdit.data import data_shape, latents_info, open_dataset
from mpdit.io import export_ema, jsonl
from mpdit.io.npz_images import check_images_header
from mpdit.io.run_lock import RunDirInUse, RunLock
from mpdit.options import config_from_values
from mpdit.training import checkpoint
from mpdit.training.config import TrainConfig
from mpdit.training.evaluation import evaluate_ema
from mpdit.training.metrics import MetricsLog
from mpdit.training.trainer import build, fit, make_run_dir, newest_readable
from mpdit.world import World, broadcast, joined_world

RESULTS, SETTINGS_FILE, LOCK = "results.jsonl", "ablation.json", "ablation.lock"
IMAGENET_LATENTS = {"in_channels": 4, "latent_size": 32, "num_classes": 1000}  # the paper's tables: SD-VAE, 256 px


def describe(rows: list, data: dict) -> list:
    """Each row with its switches, parameters and GFLOPs (the audit's, on the data's shape) and the
    network id that rows building the same network share."""
    described = []
    for row in rows:
        counts = audit(row.model, device="meta", **row.overrides, **data)
        described.append({"table": row.table, "key": row.key, "label": row.label, "model": row.model,
                          "overrides": row.overrides, "network": row.network_id(**data),
                          "params_m": counts.params_m, "gflops": counts.gflops_paper,
                          "gflops_exact": counts.gflops_exact, "paper_size": row.paper_size,
                          "paper_params_m": row.paper_params_m, "paper_gflops": row.paper_gflops,
                          "paper_fid": row.paper_fid})
    return described


def train_config(config: AblationConfig, row: dict, seed: int) -> TrainConfig:
    """The TrainConfig of one row and seed: the shared settings, the row's network, its own folder,
    an evaluation every --eval-every steps (or at the end) with a checkpoint at each."""
    every, run_dir = config.eval_every, run_folder(config.out, row, seed)
    started = os.path.isdir(run_dir) and checkpoint.run_records(run_dir)
    return config_from_values(TrainConfig, {**config.training, "eval_every": every}, model=row["model"],
                              overrides=dict(row["overrides"]), run_dir=run_dir, resume="auto" if started else None,
                              seed=seed, checkpoint_every=every, keep_checkpoints=1, sample_every=0)


def run_folder(out: str, row: dict, seed: int) -> str:
    return os.path.join(out, "runs", f"{row['model'].replace('/', '_')}-{row['network']}-seed{seed}")


def plan(config: AblationConfig) -> tuple:
    """(the rows described, the data's shape), everything checked before anything is written."""
    config.validate()
    rows = ablation_rows(config.table, config.size, config.rows)
    dataset = config.training.get("dataset")
    data = IMAGENET_LATENTS if not dataset else data_shape(open_dataset(dataset, config.training["image_size"]))
    described = describe(rows, data)
    if not config.dry_run:
        check_reference_resolution(config, data)  # before the weights are looked for: the first mistake named
        for row in described:
            train_config(config, row, config.seeds[0]).validate()
    return described, data


def check_reference_resolution(config: AblationConfig, data: dict) -> None:
    """An evaluation reference must hold images of the samples' side."""
    ref, dataset = config.training["eval_ref"], config.training["dataset"]
    if ref == "digits":
        return
    # pixels: the image size; latents: the size they were extracted at (the VAE's 8x, where unrecorded)
    side = data["latent_size"] if dataset == "digits" else \
        (latents_info(dataset) or {}).get("image_size") or 8 * data["latent_size"]
    ref_side = check_images_header(ref).shape[1]
    if ref_side != side:
        raise ValueError(f"eval_ref={ref!r}: holds {ref_side} x {ref_side} images; the rows sample {side} x {side}")


def run_ablation(config: AblationConfig) -> list:
    """Train, sample and evaluate every row and seed not yet in the folder; returns the table's
    rows (report.summarize). --dry-run: the described rows, nothing trained."""
    described, _ = plan(config)
    if config.dry_run:
        return described
    with joined_world() as world:
        return _run(config, described, world)


def _run(config: AblationConfig, described: list, world: World) -> list:
    lock = RunLock(config.out, name=LOCK, option="out", command="mpdit ablation")
    refusal = None
    if world.main:
        try:
            make_run_dir(config.out)
            lock.acquire()
            check_settings(config)
        except ValueError as error:
            lock.release()
            refusal = (isinstance(error, RunDirInUse), str(error))
    refusal = broadcast(world, refusal)
    if refusal:
        raise (RunDirInUse if refusal[0] else ValueError)(refusal[1])
    try:
        results_path = os.path.join(config.out, RESULTS)
        done = broadcast(world, {(r["network"], r["seed"]) for r in jsonl.read(results_path)} if world.main else None)
        for row, seed in pending(described, config.seeds, done):
            train = train_config(config, row, seed)
            if world.main:
                print(f"mpdit ablation: row {row['label']!r} (table {row['table']}), seed {seed}: {train.run_dir}",
                      file=sys.stderr)
            _train_and_evaluate(train, world)
            if world.main:
                jsonl.append(results_path, row_result(row, seed, train, config.out))
                write_report(config.out, described, jsonl.read(results_path), config.seeds)
            keep_weights(train.run_dir, config.keep_weights, world)
            gc.collect()
        results = jsonl.read(results_path) if world.main else []
        if world.main:
            write_report(config.out, described, results, config.seeds)
        return summarize(described, results, config.seeds)
    finally:
        lock.release()


def pending(described: list, seeds: tuple, done: set) -> list:
    """(row, seed) to train, each network and seed once, in the table's order."""
    todo, seen = [], set(done)
    for seed in seeds:
        for row in described:
            if (row["network"], seed) not in seen:
                seen.add((row["network"], seed))
                todo.append((row, seed))
    return todo


def check_settings(config: AblationConfig) -> None:
    """The folder's results were trained with these settings: a command that says otherwise is
    refused (its rows would not be comparable); the first command records them."""
    path = os.path.join(config.out, SETTINGS_FILE)
    mine = {"size": config.size, **config.training}
    recorded = read_json(path)
    if recorded is None:
        write_json(path, mine)
        return
    changed = [f"{name}={recorded.get(name)!r} there, {mine.get(name)!r} here" for name in {**recorded, **mine}
               if recorded.get(name) != mine.get(name)]
    if changed:
        raise ValueError(f"out={config.out!r}: holds an ablation with other settings ({'; '.join(changed)}); use "
                         "the same settings to continue it, or another --out")


def _train_and_evaluate(train: TrainConfig, world: World) -> None:
    """Train the row (or finish it); if a kill cut its last evaluation short, evaluate now."""
    fit(train, world)
    if broadcast(world, final_evaluation(train) is None if world.main else None):
        dataset = open_dataset(train.dataset, train.image_size)
        run = build(train, world, dataset)
        evaluate_ema(run, MetricsLog(train.run_dir, world.main))


def final_evaluation(train: TrainConfig):
    """The evaluation record of the run's last step, or None."""
    records = jsonl.read(os.path.join(train.run_dir, "metrics.jsonl"))
    return next((r for r in reversed(records) if r.get("step") == train.steps and "eval_samples" in r), None)


def row_result(row: dict, seed: int, train: TrainConfig, out: str) -> dict:
    """The result line of one row and seed, from its run's metrics.jsonl; `run`: its folder,
    relative to the ablation's."""
    records = jsonl.read(os.path.join(train.run_dir, "metrics.jsonl"))
    speeds = sorted(r["images_per_s"] for r in records if "images_per_s" in r and not r.get("final"))
    evaluations = {}
    for record in records:
        if "eval_samples" in record:  # the last record of a step wins (a resumed evaluation)
            images = record["step"] * train.global_batch_size
            evaluations[record["step"]] = {"step": record["step"], "images_seen": images,
                                           "compute_gflop": row["gflops"] * images,
                                           **{key[len("eval_"):]: value for key, value in record.items()
                                              if key.startswith("eval_")}}
    evaluations = [evaluations[step] for step in sorted(evaluations)]
    return {"network": row["network"], "seed": seed, "model": row["model"], "overrides": row["overrides"],
            "params_m": row["params_m"], "gflops": row["gflops"], "steps": train.steps,
            "global_batch_size": train.global_batch_size, "images_per_s": speeds[len(speeds) // 2],
            "evaluations": evaluations, "final": evaluations[-1], "run": os.path.relpath(train.run_dir, out)}


def keep_weights(run_dir: str, keep: str, world: World) -> None:
    """A finished row keeps its EMA as an export, its last checkpoint, or no weights."""
    if not world.main or keep == "checkpoint":
        return
    if keep == "ema":
        path, state = newest_readable(run_dir)
        if state is not None:
            export_ema(state, os.path.join(run_dir, "ema.safetensors"))
    for path in checkpoint.paths(run_dir):
        os.remove(path)

