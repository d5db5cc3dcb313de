"""MPDiT: multi-patch global-to-local diffusion transformer (Dao & Metaxas, CVPR 2026)."""
from mpdit.diffusion.flow import flow_matching_loss
from mpdit.inference.api import sample
from mpdit.io import load
from mpdit.models import MODELS, ModelConfig, MultiPatchTransformer, create_model, get_config, list_models
from mpdit.models.vae import decode

__version__ = "0.1.0"
__all__ = ["MODELS", "ModelConfig", "MultiPatchTransformer", "create_model", "decode", "evaluate",
           "flow_matching_loss", "get_config", "list_models", "load", "sample"]


def __getattr__(name):
    """mpdit.evaluate (the ADM metrics), imported on first use: it brings SciPy in."""
    if name == "evaluate":
        from mpdit.evaluation import evaluate

        return evaluate
    raise AttributeError(f"module 'mpdit' has no attribute {name!r}")
