"""MPDiT: multi-patch global-to-local diffusion transformer (Dao & Metaxas, CVPR 2026)."""
from mpdit.models import MODELS, ModelConfig, MultiPatchTransformer, create_model, get_config, list_models

__version__ = "0.1.0"
__all__ = ["MODELS", "ModelConfig", "MultiPatchTransformer", "create_model", "get_config", "list_models"]
