"""Sampling from saved models: `mpdit sample` (images from a checkpoint or export into the ADM
evaluator's .npz layout), above io, compat and diffusion."""
