"""Training-step speed of the official-layout models (mpdit.compat) per kernel backend, in one process.

What a DiT / SiT / reference-MPDiT user gets from the one-line import change: the same module,
state_dict and forward, on the engine's fused ops. The step is what the official train.py does:
forward on noised latents, MSE, backward, AdamW; DiT and SiT with integer / float times as theirs.
Providers run interleaved (round-robin), so drift hits them alike; the ratio to eager torch is
the figure. Writes one JSON line per (model, provider) to stdout.

    python benchmarks/compat_train_step.py                      # CPU: torch vs native (C++), small
    python benchmarks/compat_train_step.py --device cuda --batch 256 --models DiT-XL/2,MPDiT-XL/4x
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from mpdit.compat import DiT_models, MPDiT_models, SiT_models

REGISTRY = {**DiT_models, **SiT_models, **MPDiT_models}


def make_step(name: str, backend: str, compile_: bool, batch: int, input_size: int, device: str):
    torch.manual_seed(0)
    model = REGISTRY[name](input_size=input_size, kernel_backend=backend).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0)
    forward = torch.compile(model) if compile_ else model
    x = torch.randn(batch, 4, input_size, input_size, device=device)
    y = torch.randint(0, 1000, (batch,), device=device)
    ddpm = name.startswith("DiT")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda")

    def step():
        t = torch.randint(0, 1000, (batch,), device=device) if ddpm else torch.rand(batch, device=device)
        with autocast:
            out = forward(x, t, y)
        loss = F.mse_loss(out[:, :4].float(), x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def timed(step, device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    step()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--models", default="DiT-S/2,MPDiT-B/4x")
    parser.add_argument("--providers", default="torch,native", help="backends; '+compile' appended compiles")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--input-size", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True
    for name in args.models.split(","):
        steps = {}
        for provider in args.providers.split(","):
            backend, _, compiled = provider.partition("+")
            steps[provider] = make_step(name, backend, compiled == "compile", args.batch, args.input_size,
                                        args.device)
        for step in steps.values():
            for _ in range(args.warmup):
                step()
        times = {provider: [] for provider in steps}
        for _ in range(args.steps):  # round-robin
            for provider, step in steps.items():
                times[provider].append(timed(step, args.device))
        base = statistics.median(times[next(iter(times))])
        for provider, values in times.items():
            median = statistics.median(values)
            print(json.dumps({"model": name, "provider": provider, "device": args.device, "batch": args.batch,
                              "input_size": args.input_size, "step_ms": round(1e3 * median, 1),
                              "images_per_s": round(args.batch / median, 1),
                              "speedup_vs_first": round(base / median, 3)}), flush=True)


if __name__ == "__main__":
    main()
