"""Data-parallel scaling of `mpdit train`: one torchrun launch per process count, the same
per-process batch (weak scaling: the global batch grows with the processes), images/s from the
run's metrics.jsonl and the efficiency against a single process. Streams one JSON line per
launch to <out>/scaling.jsonl, then writes <out>/scaling.md.

    python benchmarks/scaling.py --out DIR                                      # this CPU: digits, gloo
    python benchmarks/scaling.py --model MPDiT-XL --dataset /data/latents \\
        --per-process-batch 32 --processes 1,2,4,8 --steps 200 --out DIR        # a GPU node: NCCL

images/s is the mean over the metrics windows after the first (which holds start-up and warm-up).
Each worker runs one CPU thread unless OMP_NUM_THREADS says otherwise (torchrun's own default for
several workers), so that the single-process figure is not a two-thread one.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for scaling.jsonl and scaling.md")
    parser.add_argument("--model", default="MPDiT-S")
    parser.add_argument("--stages", default="4:1,2:1", help="the model's stages (MPDiT); '' = the model's own")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--per-process-batch", type=int, default=16)
    parser.add_argument("--processes", default="1,2,4", help="comma-separated process counts")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--windows", type=int, default=4, help="metrics windows per run (the first is dropped)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per launch")
    args = parser.parse_args(argv)
    try:
        args.process_counts = [int(n) for n in args.processes.split(",")]
    except ValueError:
        parser.error(f"--processes={args.processes!r}: expected comma-separated integers")
    if args.steps % args.windows or args.windows < 2:
        parser.error(f"--steps={args.steps}: expected a multiple of --windows={args.windows} (at least 2)")
    return args


def launch(args, processes: int, run_dir: str) -> dict:
    """One `torchrun --standalone` training run; its throughput from metrics.jsonl."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
               "-m", "mpdit", "train", "--model", args.model, "--dataset", args.dataset,
               "--global-batch-size", str(args.per_process_batch * processes), "--steps", str(args.steps),
               "--log-every", str(args.steps // args.windows), "--checkpoint-every", str(args.steps),
               "--sample-every", "0", "--num-workers", "0", "--run-dir", run_dir]
    command += ["--stages", args.stages] if args.stages else []
    env = {"OMP_NUM_THREADS": "1", **os.environ}
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout, env=env)
    if result.returncode:
        raise SystemExit(f"scaling: {processes} process(es) failed:\n{result.stderr[-3000:]}")
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        windows = [json.loads(line)["images_per_s"] for line in f if '"final"' not in line]
    return {"processes": processes, "global_batch": args.per_process_batch * processes,
            "images_per_s": statistics.mean(windows[1:]), "windows": windows,
            "wall_s": time.perf_counter() - start}


def table(rows: list) -> str:
    base = rows[0]["images_per_s"] / rows[0]["processes"]
    lines = ["| processes | global batch | images/s | per process | efficiency |", "|---|---|---|---|---|"]
    for row in rows:
        per_process = row["images_per_s"] / row["processes"]
        lines.append(f"| {row['processes']} | {row['global_batch']} | {row['images_per_s']:.1f} | "
                     f"{per_process:.1f} | {per_process / base:.0%} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    rows = []
    with open(os.path.join(args.out, "scaling.jsonl"), "w") as stream:
        for processes in args.process_counts:
            with tempfile.TemporaryDirectory() as run_dir:
                row = launch(args, processes, run_dir)
            rows.append(row)
            stream.write(json.dumps(row) + "\n")
            stream.flush()
            print(f"{processes} process(es): {row['images_per_s']:.1f} images/s", flush=True)
    import platform

    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"{os.cpu_count()} CPU cores"
    settings = (f"{args.model} (stages {args.stages or 'default'}), {args.dataset}, {args.per_process_batch} images "
                f"per process and step, {args.steps} steps; {device} ({platform.processor() or platform.machine()}), "
                f"torch {torch.__version__}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 1)} per process")
    text = f"{settings}\n\n{table(rows)}\n"
    with open(os.path.join(args.out, "scaling.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
