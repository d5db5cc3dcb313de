"""MPDiT and the DiT/SiT baselines, one configurable network."""
from mpdit.models.registry import MODELS, create_model, get_config, list_models
from mpdit.models.transformer import ModelConfig, MultiPatchTransformer

__all__ = ["MODELS", "ModelConfig", "MultiPatchTransformer", "create_model", "get_config", "list_models"]
