"""AblationConfig: what `mpdit ablation` adds to a training run's settings.

Every row trains with the same TrainConfig settings (learning rate, batch, steps, the
evaluation: `mpdit ablation` generates those options from TrainConfig, so each is declared
once); this config holds the rest: the table, the size, the rows, the seeds, the folder.
"""
from dataclasses import dataclass, field
from typing import Optional

from mpdit.ablation.rows import TABLES, ablation_rows
from mpdit.models.registry import SIZES
from mpdit.options import check_choices, csv_list, int_list, option

KEEP_WEIGHTS = ("ema", "checkpoint", "none")
# TrainConfig fields the ablation sets for each row itself
PER_ROW = ("model", "overrides", "run_dir", "resume", "init", "seed", "checkpoint_every", "keep_checkpoints",
           "sample_every")


@dataclass
class AblationConfig:
    out: Optional[str] = option(None, "folder of the ablation: results.jsonl (one line per finished row and seed), "
                                      "table.md, ablation.png, and runs/ (each row's training run); a killed "
                                      "command continues there", metavar="DIR")
    table: str = option("1", "the paper's table: 1 (the components, one at a time), 4 (the fine depth k), all "
                             "(both; a row in both trains once)", choices=TABLES)
    size: str = option("B", "model size of every row (the paper: B; Table 4 also XL)", choices=tuple(SIZES))
    rows: Optional[tuple] = option(None, "some of the table's rows, by key (--dry-run lists them)", type=csv_list,
                                   metavar="KEY,KEY")
    seeds: tuple = option((0,), "training seeds: each row trains once per seed; the table gives the mean and "
                                "the spread", type=int_list, metavar="S,S")
    keep_weights: str = option("ema", "what a finished row keeps of its weights: ema (export-ema's "
                                      "ema.safetensors), checkpoint (its last), none", choices=KEEP_WEIGHTS)
    dry_run: bool = option(False, "print the rows (switches, params, GFLOPs) and exit without training")
    json: bool = option(False, "print JSON instead of the table")
    training: dict = field(default_factory=dict, metadata={"cli": False})  # TrainConfig fields, the same for all rows

    def validate(self) -> None:
        ablation_rows(self.table, self.size, self.rows)  # the table, the size and the row keys
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds={','.join(map(str, self.seeds))!r}: expected distinct integers")
        check_choices(self)  # keep_weights
        if self.dry_run:
            return
        for name in ("out", "dataset", "steps", "global_batch_size", "eval_ref"):
            value = self.training.get(name) if name != "out" else self.out
            if value is None:
                raise ValueError(f"{name}: required to run the rows (--{name.replace('_', '-')}; not with "
                                 "--dry-run)")
        if self.training.get("parallel") == "fsdp":
            raise ValueError("parallel='fsdp': every row is evaluated during training, which a sharded EMA does not "
                             "support; use ddp")
        steps, every = self.training["steps"], self.eval_every
        if isinstance(steps, int) and isinstance(every, int) and 0 < steps < every:
            raise ValueError(f"steps={steps}: too small for one evaluation every {every} steps (--eval-every); "
                             f"expected steps >= {every}")
        if self.training["eval_ref"] == "digits" and self.training.get("eval_samples", 4) < 4:
            raise ValueError(f"eval_samples={self.training['eval_samples']}: too few for one evaluation; the digits "
                             "figures (precision / recall, k = 3) need at least 4")

    @property
    def eval_every(self) -> int:
        """Steps between evaluations: --eval-every, or once, at the end."""
        return self.training.get("eval_every") or self.training.get("steps")
