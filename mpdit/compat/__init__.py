"""Drop-in model classes for scripts written for the public DiT, SiT and MPDiT codebases.

In a DiT or SiT training or sampling script, change one import:

    from models import DiT_models              ->   from mpdit.compat import DiT_models
    from models import SiT_models              ->   from mpdit.compat import SiT_models
    from models.mpdit import MPDiT_models      ->   from mpdit.compat import MPDiT_models

The registries hold the official names and constructor arguments (plus kernel_backend="torch" |
"triton" | "native" | "auto"); the modules load the official checkpoints with strict=True and
compute what the official modules compute. `mpdit convert` moves checkpoints between these
layouts and the engine's.
"""
from mpdit.compat.models import DiT, DiT_models, MPDiT, MPDiT_models, MPDiTv2, SiT, SiT_models, official_model

__all__ = ["DiT", "DiT_models", "MPDiT", "MPDiT_models", "MPDiTv2", "SiT", "SiT_models", "official_model"]
