"""Classifier-free guidance as a velocity field: one batched forward for both branches."""
import math

import torch


def check_guidance(cfg_scale, guide_channels=None, interval=(0.0, 1.0)) -> None:
    """ValueError for guidance settings that would give no image (a NaN scale: all-black samples)."""
    if isinstance(cfg_scale, bool) or not isinstance(cfg_scale, (int, float)) or not math.isfinite(cfg_scale) \
            or cfg_scale < 0:
        raise ValueError(f"cfg_scale={cfg_scale!r}: expected a finite number >= 0 (1 = no guidance)")
    if guide_channels is not None and not (isinstance(guide_channels, int) and guide_channels >= 1):
        raise ValueError(f"guide_channels={guide_channels!r}: expected None or a positive integer")
    if len(interval) != 2 or not 0.0 <= interval[0] <= interval[1] <= 1.0:
        raise ValueError(f"interval={interval!r}: expected (t_lo, t_hi) with 0 <= t_lo <= t_hi <= 1")


class GuidedVelocity:
    """v(x, t) = v_u + w (v_c - v_u) for fixed labels y, from ONE forward of the doubled batch.

    guide_channels: guide only the first channels and take the conditional velocity for the
        rest (DiT guided 3 of its 4 latent channels in its published numbers); None = all.
    interval: (t_lo, t_hi); outside it the plain conditional velocity is used, with a
        forward of the single batch (guidance interval, Kynkaanniemi et al. 2024).
    Counts its model evaluations in `nfe` (one per call, whatever the batch).
    """

    def __init__(self, model, y: torch.Tensor, cfg_scale: float = 1.0, guide_channels: int = None,
                 interval: tuple = (0.0, 1.0), null_class: int = None):
        check_guidance(cfg_scale, guide_channels, interval)
        self.model = model
        self.y = y
        self.cfg_scale = float(cfg_scale)
        self.guide_channels = guide_channels
        self.interval = (float(interval[0]), float(interval[1]))
        null = model.config.num_classes if null_class is None else null_class
        self.y_pair = torch.cat([y, torch.full_like(y, null)])  # conditional half, then unconditional
        self.nfe = 0

    def guided_at(self, t: float) -> bool:
        return self.cfg_scale != 1.0 and self.interval[0] <= t <= self.interval[1]

    def __call__(self, x: torch.Tensor, t) -> torch.Tensor:
        """x (B, C, H, W), t a float or 0-d tensor shared by the batch -> velocity (B, C, H, W)."""
        self.nfe += 1
        return self.evaluate(x, t, self.guided_at(float(t)))

    def evaluate(self, x: torch.Tensor, t, guided: bool) -> torch.Tensor:
        """The velocity with guidance on or off as told: no host sync (CUDA-graph capture)."""
        B = x.shape[0]
        if isinstance(t, torch.Tensor):
            t_batch = t.to(device=x.device, dtype=torch.float32).expand(B)
        else:  # a fill on the device, not a host copy: stays legal inside CUDA-graph capture
            t_batch = torch.full((B,), float(t), dtype=torch.float32, device=x.device)
        if not guided:
            return self.model(x, t_batch, self.y)
        out = self.model(torch.cat([x, x]), torch.cat([t_batch, t_batch]), self.y_pair)
        cond, uncond = out.chunk(2)
        guided = uncond + self.cfg_scale * (cond - uncond)
        if self.guide_channels is not None:
            guided = torch.cat([guided[:, : self.guide_channels], cond[:, self.guide_channels:]], dim=1)
        return guided


class GraphedVelocity:
    """A GuidedVelocity replayed from CUDA graphs: the launches of a whole evaluation (the
    doubled batch's forward and the guidance combination) cost one replay.

    Two graphs for this batch's static shapes, each captured on first use: the guided
    evaluation and the plain conditional one (outside the guidance interval); the sampler's
    host-side time grid picks which. x is copied into the graph's input and t filled in on
    the device; the output is cloned, since the next replay overwrites it. retarget(y) points
    the captured graphs at new labels of the same batch size (no capture again).
    """

    def __init__(self, velocity: GuidedVelocity, x_like: torch.Tensor):
        if x_like.device.type != "cuda":
            raise ValueError(f"cuda_graph=True: CUDA graphs need a CUDA device; the model is on {x_like.device}")
        self.velocity = velocity
        self.static_x = torch.empty_like(x_like)
        self.static_t = torch.zeros((), device=x_like.device, dtype=torch.float32)
        self.graphs = {}  # guided -> (graph, output buffer)

    @property
    def nfe(self) -> int:
        return self.velocity.nfe

    def retarget(self, y: torch.Tensor) -> None:
        """New labels (same batch size) for the next run, written into the captured buffers."""
        self.velocity.y.copy_(y)
        self.velocity.y_pair[: y.shape[0]].copy_(y)
        self.velocity.nfe = 0

    def __call__(self, x: torch.Tensor, t) -> torch.Tensor:
        guided = self.velocity.guided_at(float(t))
        if guided not in self.graphs:
            self.graphs[guided] = self._capture(guided)
        graph, out = self.graphs[guided]
        self.static_x.copy_(x)
        self.static_t.fill_(float(t))
        graph.replay()
        self.velocity.nfe += 1
        return out.clone()

    def _capture(self, guided: bool) -> tuple:
        run = lambda: self.velocity.evaluate(self.static_x, self.static_t, guided)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up off the capture: autotuning, cuDNN plans, lazy init
            for _ in range(2):
                run()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = run()
        return graph, out
