"""The MPDiT paper's printed params / GFLOPs (ImageNet 256), for comparison only.

Each row names how to BUILD the network (a registered model plus create_model overrides);
the counts themselves always come from the instantiated model (mpdit.audit.flops).
Source: Dao & Metaxas, CVPR 2026, Tables 1, 3 and 4 (docs/model.md).
"""
from dataclasses import dataclass, field

# DiT -> MPDiT conditioning upgrades; flow matching needs no variance channels.
SHARED = {"shared_adaln": True, "learn_sigma": False}
CLASS_TOKENS = {**SHARED, "class_tokens": 16}
UPGRADES = {**CLASS_TOKENS, "time_embed": "fno"}  # "DiT-*/2 +" in Table 4


@dataclass(frozen=True)
class PaperRow:
    section: str
    label: str
    model: str
    overrides: dict = field(default_factory=dict)
    params_m: float = None  # None where the paper prints no figure
    gflops: float = None
    ratio_to: str = None  # label of the row this one's GFLOPs ratio is quoted against
    ratio_pct: float = None


PAPER_ROWS = [
    PaperRow("Component ablation (Table 1)", "DiT-B/2", "DiT-B/2", {}, 130.0, 23.0),
    PaperRow("Component ablation (Table 1)", "+ shared AdaLN", "DiT-B/2", SHARED, 90.3, 22.9),
    PaperRow("Component ablation (Table 1)", "+ 16 class tokens", "DiT-B/2", CLASS_TOKENS, 101.9, 24.3),
    PaperRow("Component ablation (Table 1)", "+ FNO time embedding", "DiT-B/2", UPGRADES, 101.2, 24.3),
    PaperRow("Component ablation (Table 1)", "+ MPDiT (k = 6)", "DiT-B/2", {**UPGRADES, "fine_depth": 6},
             104.8, 16.6),
    PaperRow("Model configurations (Table 3)", "MPDiT-B (N 12, k 6, D 768)", "MPDiT-B", {}, None, 16.6,
             ratio_to="DiT-B/2", ratio_pct=72.1),
    PaperRow("Model configurations (Table 3)", "MPDiT-XL (N 28, k 6, D 1152)", "MPDiT-XL", {}, None, 59.3,
             ratio_to="DiT-XL/2", ratio_pct=49.9),
    PaperRow("Model configurations (Table 3)", "DiT-XL/2", "DiT-XL/2", {}, None, 118.6),
    PaperRow("Fine-depth ablation B (Table 4)", "DiT-B/2 + upgrades", "DiT-B/2", UPGRADES, 101.2, 24.3),
    PaperRow("Fine-depth ablation B (Table 4)", "MPDiT-B k = 4", "MPDiT-B", {"fine_depth": 4}, 104.8, 13.9),
    PaperRow("Fine-depth ablation B (Table 4)", "MPDiT-B k = 6", "MPDiT-B", {"fine_depth": 6}, 104.8, 16.6),
    PaperRow("Fine-depth ablation B (Table 4)", "MPDiT-B k = 8", "MPDiT-B", {"fine_depth": 8}, 104.8, 19.3),
    PaperRow("Fine-depth ablation XL (Table 4)", "DiT-XL/2 + upgrades", "DiT-XL/2", UPGRADES, 473.1, 125.5),
    PaperRow("Fine-depth ablation XL (Table 4)", "MPDiT-XL k = 4", "MPDiT-XL", {"fine_depth": 4}, 481.2, 53.2),
    PaperRow("Fine-depth ablation XL (Table 4)", "MPDiT-XL k = 6", "MPDiT-XL", {"fine_depth": 6}, 481.2, 59.3),
    PaperRow("Fine-depth ablation XL (Table 4)", "MPDiT-XL k = 8", "MPDiT-XL", {"fine_depth": 8}, 481.2, 65.4),
]

# The paper prints DiT-B/2's 130.5 M parameters (DiT's own count) as 130.0.
ROUNDED_BY_THE_PAPER = {("DiT-B/2", "params_m")}
