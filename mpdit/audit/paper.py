"""The MPDiT paper's printed params / GFLOPs / FID (ImageNet 256), for comparison only.

Each row names how to BUILD the network (a registered model plus create_model overrides);
the counts themselves always come from the instantiated model (mpdit.audit.flops).
Source: Dao & Metaxas, CVPR 2026, Tables 1, 3 and 4 (docs/model.md). The ablation rows carry
the FID the paper prints for them (80 epochs, no guidance) and the key `mpdit ablation --rows`
names them by.
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
    fid: float = None  # the ablation tables' FID-50K, 80 epochs, no guidance
    key: str = None  # the ablation row's name on the command line


T1 = "Component ablation (Table 1)"
T4B, T4XL = "Fine-depth ablation B (Table 4)", "Fine-depth ablation XL (Table 4)"

PAPER_ROWS = [
    PaperRow(T1, "DiT-B/2", "DiT-B/2", {}, 130.0, 23.0, fid=34.84, key="dit"),
    PaperRow(T1, "+ shared AdaLN", "DiT-B/2", SHARED, 90.3, 22.9, fid=35.31, key="shared-adaln"),
    PaperRow(T1, "+ 16 class tokens", "DiT-B/2", CLASS_TOKENS, 101.9, 24.3, fid=28.56, key="class-tokens"),
    PaperRow(T1, "+ FNO time embedding", "DiT-B/2", UPGRADES, 101.2, 24.3, fid=24.52, key="fno-time"),
    PaperRow(T1, "+ MPDiT (k = 6)", "DiT-B/2", {**UPGRADES, "fine_depth": 6}, 104.8, 16.6, fid=24.74,
             key="mpdit-k6"),
    PaperRow("Model configurations (Table 3)", "MPDiT-B (N 12, k 6, D 768)", "MPDiT-B", {}, None, 16.6,
             ratio_to="DiT-B/2", ratio_pct=72.1),
    PaperRow("Model configurations (Table 3)", "MPDiT-XL (N 28, k 6, D 1152)", "MPDiT-XL", {}, None, 59.3,
             ratio_to="DiT-XL/2", ratio_pct=49.9),
    PaperRow("Model configurations (Table 3)", "DiT-XL/2", "DiT-XL/2", {}, None, 118.6),
    PaperRow(T4B, "DiT-B/2 + upgrades", "DiT-B/2", UPGRADES, 101.2, 24.3, fid=24.52, key="upgrades"),
    PaperRow(T4B, "MPDiT-B k = 4", "MPDiT-B", {"fine_depth": 4}, 104.8, 13.9, fid=26.94, key="k4"),
    PaperRow(T4B, "MPDiT-B k = 6", "MPDiT-B", {"fine_depth": 6}, 104.8, 16.6, fid=24.74, key="k6"),
    PaperRow(T4B, "MPDiT-B k = 8", "MPDiT-B", {"fine_depth": 8}, 104.8, 19.3, fid=24.62, key="k8"),
    PaperRow(T4XL, "DiT-XL/2 + upgrades", "DiT-XL/2", UPGRADES, 473.1, 125.5, fid=9.22, key="upgrades"),
    PaperRow(T4XL, "MPDiT-XL k = 4", "MPDiT-XL", {"fine_depth": 4}, 481.2, 53.2, fid=11.11, key="k4"),
    PaperRow(T4XL, "MPDiT-XL k = 6", "MPDiT-XL", {"fine_depth": 6}, 481.2, 59.3, fid=9.92, key="k6"),
    PaperRow(T4XL, "MPDiT-XL k = 8", "MPDiT-XL", {"fine_depth": 8}, 481.2, 65.4, fid=9.73, key="k8"),
]

# The paper prints DiT-B/2's 130.5 M parameters (DiT's own count) as 130.0.
ROUNDED_BY_THE_PAPER = {("DiT-B/2", "params_m")}
