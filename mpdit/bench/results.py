"""A bench run's figures: long-format rows, the Shape each was measured at, and bench.jsonl.

Results owns the rows and the stream. bench.jsonl's first line records the run's settings; each
finished case is then one line {"done": key, "rows": [...], "error": ...} (mpdit.io.jsonl: synced,
and a line torn by a kill is skipped on reading and cut before the next append), so a case is in
the stream whole or not at all. Rows: case, provider, mode, metric, unit, x (the Shape's label),
value, device, timestamp, git sha, and the Shape's fields.
"""
import csv
import datetime
import json
import os
import subprocess
from dataclasses import astuple, dataclass, fields
from typing import Optional

import torch

from mpdit.io import jsonl
from mpdit.io.files import atomic_path

# bench.jsonl's layout, recorded with the settings: a resume of another layout is refused (2: a
# sampling run's step count moved from its mode into its Shape; 3: one line per finished case).
STREAM_FORMAT = 3


@dataclass(frozen=True)
class Shape:
    """What a figure was measured at: its rows carry these fields, and `label` (the row's x) is
    only ever rendered from them, never parsed back."""

    batch: Optional[int] = None
    width: Optional[int] = None  # hidden width D (fused ops)
    dtype: Optional[str] = None  # "float32", "bfloat16"
    guidance: Optional[float] = None  # classifier-free guidance scale (sampling)
    steps: Optional[int] = None  # sampler steps of a full sampling run

    @property
    def label(self) -> str:
        parts = [f"B={self.batch}" if self.batch is not None else None,
                 f"D={self.width}" if self.width is not None else None,
                 f"cfg={self.guidance}" if self.guidance is not None else None,
                 f"{self.steps} steps" if self.steps is not None else None, self.dtype]
        return " ".join(part for part in parts if part)


SHAPE_FIELDS = tuple(spec.name for spec in fields(Shape))
ROW_FIELDS = ("case", "provider", "mode", "metric", "unit", "x", "value", "device", "timestamp", "git_sha",
              *SHAPE_FIELDS)


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def shape_of(row: dict) -> Shape:
    return Shape(*(row.get(name) for name in SHAPE_FIELDS))


def git_sha() -> str:
    """The checkout's commit; MPDIT_GIT_SHA overrides it (a copy of a working tree, as on a lent
    GPU machine, can carry another commit's .git)."""
    if os.environ.get("MPDIT_GIT_SHA"):
        return os.environ["MPDIT_GIT_SHA"]
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


class Results:
    """The rows and failures of a run, indexed by (case, provider, mode, metric) and Shape."""

    def __init__(self, device: str, stream: str = None):
        self.device, self.stream, self.sha = device, stream, git_sha()
        self.rows, self.errors, self.finished = [], [], set()  # finished: the keys (JSON) of the cases recorded
        self._index, self._streamed = {}, 0  # _streamed: rows already in the stream

    @classmethod
    def resumed(cls, device: str, stream: str) -> "Results":
        """The rows and errors of the cases bench.jsonl holds."""
        results = cls(device, stream)
        for key, (rows, error) in read_stream(stream).items():
            results.adopt(key, rows, error)
        return results

    def adopt(self, key: str, rows: list, error) -> None:
        """The rows (and error) of a case already in the stream: a resumed run's, a case process's."""
        for row in rows:
            self._keep(row)
        self.errors += [error] if error else []
        self.finished.add(key)
        self._streamed = len(self.rows)

    def _keep(self, row: dict) -> None:
        self.rows.append(row)
        self._index.setdefault((row["case"], row["provider"], row["mode"], row["metric"]), {})[shape_of(row)] = \
            row["value"]

    def add(self, case: str, provider: str, mode: str, metric: str, unit: str, x, value: float) -> None:
        """One row; x is a Shape (its fields kept, its label the row's x) or a plain label."""
        shape = x if isinstance(x, Shape) else Shape()
        self._keep({"case": case, "provider": provider, "mode": mode, "metric": metric, "unit": unit,
                    "x": shape.label if isinstance(x, Shape) else x, "value": value, "device": self.device,
                    "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    "git_sha": self.sha, **dict(zip(SHAPE_FIELDS, astuple(shape)))})

    def value(self, case, provider, mode, metric, shape: Shape = None):
        """The value recorded for this key at `shape` (None: the last one at any shape), or None."""
        found = self._index.get((case, provider, mode, metric), {})
        return next(reversed(found.values()), None) if shape is None else found.get(shape)

    def shapes(self, mode: str) -> list:
        """The Shapes of a mode's rows, smallest batch first."""
        found = {shape_of(row) for row in self.rows if row["mode"] == mode}
        return sorted(found, key=lambda shape: (shape.batch or 0, shape.width or 0, shape.steps or 0))

    def distinct(self, mode: str, key: str) -> list:
        """Values of `key` (case, provider) among the rows of `mode`, in first-seen order."""
        return list(dict.fromkeys(row[key] for row in self.rows if row["mode"] == mode))

    def finish(self, key, error: dict = None) -> None:
        """Stream the case `key`: the rows added since the last case (and its error, if any)."""
        self.errors += [error] if error else []
        if self.stream:
            jsonl.append(self.stream, {"done": list(key), "rows": self.rows[self._streamed:],
                                       **({"error": error} if error else {})})
        self.finished.add(json.dumps(list(key)))
        self._streamed = len(self.rows)

    def top_kernels(self) -> dict:
        """{"<model> <provider>": [(kernel, ms per step)], longest first}, from the profile's rows."""
        top = {}
        for row in self.rows:
            if row["mode"] == "top_kernel":
                top.setdefault(f"{row['case']} {row['provider']}", []).append((row["metric"], row["value"]))
        return top

    def write(self, folder: str, meta: dict) -> str:
        """bench.json (meta, rows, errors) and bench.csv (the rows); returns bench.json's path."""
        path = os.path.join(folder, "bench.json")
        with atomic_path(path) as tmp, open(tmp, "w") as f:
            json.dump({**meta, "rows": self.rows, "errors": self.errors, "top_kernels": self.top_kernels()}, f,
                      indent=1)
        with atomic_path(os.path.join(folder, "bench.csv")) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=ROW_FIELDS)
            writer.writeheader()
            writer.writerows(self.rows)
        return path


def read_stream(path: str) -> dict:
    """{case key (JSON): (its rows, its error or None)} of the cases bench.jsonl holds."""
    cases = [item for item in jsonl.read(path) if "done" in item]
    for item in cases:
        if not isinstance(item.get("rows"), list):
            raise ValueError(f"{path}: the line of case {item['done']} has no list of rows (a hand edit?); expected "
                             f"stream format {STREAM_FORMAT}")
    return {json.dumps(item["done"]): (item["rows"], item.get("error")) for item in cases}


def start_stream(path: str, settings: dict) -> None:
    """A new bench.jsonl whose first line is the run's settings."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(json.dumps({"settings": {**settings, "format": STREAM_FORMAT}}) + "\n")


def check_settings(path: str, settings: dict) -> None:
    """ValueError naming the first setting bench.jsonl was written with that differs."""
    records = jsonl.read(path)
    recorded = (records[0].get("settings") if records else None) or {}
    for key, value in {**settings, "format": STREAM_FORMAT}.items():
        if recorded.get(key) != value:
            raise ValueError(f"resume: {path} was written with {key}={recorded.get(key)!r}, this run has "
                             f"{key}={value!r}; resume with the same settings, or use another --out")
