"""One check of a state dict against the tensors a model expects: every loader and converter
goes through it, so a file that does not fit its model is one line naming the file, the first
offending key and both shapes."""


def check_state_dict(given: dict, expected: dict, what: str, hint: str = "") -> None:
    """ValueError naming the first missing key, shape mismatch or unexpected key of `given`
    against `expected` ({key: shape}); `what` names the file, `hint` is appended."""
    shape = list  # [a, b]: shapes printed as docs/checkpoint-layouts.md writes them
    for key, want in expected.items():
        if key not in given:
            raise ValueError(f"{what}: missing key {key!r} (expected shape {shape(want)}){hint}")
        if tuple(given[key].shape) != tuple(want):
            raise ValueError(f"{what}: {key!r} has shape {shape(given[key].shape)}, the model expects "
                             f"{shape(want)}{hint}")
    for key, tensor in given.items():
        if key not in expected:
            raise ValueError(f"{what}: unexpected key {key!r} (shape {shape(tensor.shape)}){hint}")
