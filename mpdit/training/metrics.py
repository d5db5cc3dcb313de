"""metrics.jsonl in the run folder (appended, so a resumed run continues it), and TensorBoard
when it is installed."""
import json
import os

from mpdit.io.files import atomic_path


class MetricsLog:
    def __init__(self, run_dir: str, enabled: bool):
        self.enabled = enabled
        self.path = os.path.join(run_dir, "metrics.jsonl")
        self.tensorboard = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tensorboard = SummaryWriter(os.path.join(run_dir, "tensorboard"))
            except ImportError:  # optional
                pass

    def keep_until(self, step: int) -> None:
        """Drop the records past `step` (and the final ones), so that a run resumed from its
        checkpoint at `step` logs each step once; rewritten atomically."""
        if not self.enabled or not os.path.exists(self.path):
            return
        with open(self.path) as f:
            lines = [line for line in f if line.strip()]
        kept = []
        for line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a torn last line from a killed run
                continue
            if record.get("step", 0) <= step and not record.get("final"):
                kept.append(line if line.endswith("\n") else line + "\n")
        with atomic_path(self.path) as tmp, open(tmp, "w") as f:
            f.writelines(kept)

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tensorboard is not None and "step" in record:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "step":
                    self.tensorboard.add_scalar(key, value, record["step"])
