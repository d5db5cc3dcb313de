"""The objective and the samplers: flow matching (flow), classifier-free guidance (guidance),
ODE / SDE samplers (sampling)."""
from mpdit.diffusion.flow import flow_matching_loss
from mpdit.diffusion.guidance import GuidedVelocity
from mpdit.diffusion.sampling import SAMPLERS, sample

__all__ = ["GuidedVelocity", "SAMPLERS", "flow_matching_loss", "sample"]
