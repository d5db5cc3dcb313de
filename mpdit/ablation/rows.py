"""The rows of the paper's ablation tables at any size: Table 1 (the components, one at a time,
from DiT-B/2 to MPDiT) and Table 4 (the fine depth k), built from the audit's paper rows.

A row is a registered model and its create_model overrides; two rows that build the same
network (Table 1's last row is Table 4's k = 6, Table 1's "+ FNO" is Table 4's baseline) are
trained once. The paper ran Table 1 at B and Table 4 at B and XL; at another size a row shows
the figures of the paper's nearest size (S -> B, L -> XL), named in the table.
"""
import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass

from mpdit.audit.paper import PAPER_ROWS, T1, T4B, T4XL
from mpdit.models import get_config
from mpdit.models.registry import SIZES

TABLES = ("1", "4", "all")
PAPER_SIZE = {"S": "B", "B": "B", "L": "XL", "XL": "XL"}  # the paper's figures shown at each size
SECTIONS = {("1", "B"): T1, ("4", "B"): T4B, ("4", "XL"): T4XL}


@dataclass(frozen=True)
class AblationRow:
    table: str  # "1" or "4"
    key: str  # its name for --rows
    label: str  # as the paper labels it, at the size run
    model: str  # registered model name at the size run
    overrides: dict
    paper_size: str  # the size of the paper's figures below
    paper_params_m: float
    paper_gflops: float
    paper_fid: float

    def model_config(self, **data) -> dict:
        """The network's full config (with the data's in_channels, latent_size, num_classes)."""
        return dataclasses.asdict(get_config(self.model, **self.overrides, **data))

    def network_id(self, **data) -> str:
        """The same for two rows that build the same network: they share one training run."""
        text = json.dumps(self.model_config(**data), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:10]


def at_size(name: str, size: str) -> str:
    """'DiT-B/2' -> 'DiT-S/2', 'MPDiT-B k = 4' -> 'MPDiT-S k = 4'."""
    return re.sub(r"-(S|B|L|XL)\b", f"-{size}", name)


def ablation_rows(table: str, size: str, keys=None) -> list:
    """The rows of `table` ('1', '4' or 'all') at `size`, in the paper's order; `keys` picks some."""
    if table not in TABLES:
        raise ValueError(f"table={table!r}: expected one of {', '.join(TABLES)}")
    if size not in SIZES:
        raise ValueError(f"size={size!r}: expected one of {', '.join(SIZES)}")
    tables = ("1", "4") if table == "all" else (table,)
    paper_size = PAPER_SIZE[size]
    rows = []
    for name in tables:
        section = SECTIONS.get((name, paper_size), SECTIONS[(name, "B")])  # Table 1 exists at B only
        shown = paper_size if section != T1 else "B"
        for paper in (row for row in PAPER_ROWS if row.section == section):
            rows.append(AblationRow(name, paper.key, at_size(paper.label, size), at_size(paper.model, size),
                                    dict(paper.overrides), shown, paper.params_m, paper.gflops, paper.fid))
    if keys:
        known = [row.key for row in rows]
        unknown = [key for key in keys if key not in known]
        if unknown:
            raise ValueError(f"rows={unknown[0]!r}: not a row of table {table}; expected some of "
                             f"{', '.join(dict.fromkeys(known))}")
        rows = [row for row in rows if row.key in keys]
    return rows
