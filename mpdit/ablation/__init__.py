"""`mpdit ablation`: the paper's ablation tables (Table 1, the components; Table 4, the fine
depth k) trained, sampled and evaluated by the engine at any size, with the paper's figures
beside each row (rows), the settings (config), the runs (runner), the table and plot (report)."""
from mpdit.ablation.config import AblationConfig
from mpdit.ablation.report import format_rows, format_table
from mpdit.ablation.rows import ablation_rows
from mpdit.ablation.runner import run_ablation

__all__ = ["AblationConfig", "ablation_rows", "format_rows", "format_table", "run_ablation"]
