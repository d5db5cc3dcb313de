"""torch-fidelity's own Inception extractor, imported without its package's __init__ (which
imports torchvision, whose index wheels do not import on the CPU build of torch CI uses).
torch-fidelity is installed without dependencies for this (.ci/run); None when it is absent."""
import importlib.util
import sys
import types


def fidelity_inception_class():
    """torch_fidelity.feature_extractor_inceptionv3.FeatureExtractorInceptionV3, or None."""
    if "torch_fidelity" not in sys.modules:  # a bare package object: submodules import, __init__ does not run
        spec = importlib.util.find_spec("torch_fidelity")
        if spec is None:
            return None
        package = types.ModuleType("torch_fidelity")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["torch_fidelity"] = package
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    return FeatureExtractorInceptionV3


def fidelity_resize(*args, **kwargs):
    """torch-fidelity's TensorFlow-1-compatible bilinear resize."""
    fidelity_inception_class()
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    return interpolate_bilinear_2d_like_tensorflow1x(*args, **kwargs)
