"""FSDP2 under torchrun: sharding, and whole state dicts for checkpoints (parameters are sharded
DTensors; checkpoints hold full, unsharded state dicts)."""
import torch


def shard(model: torch.nn.Module) -> None:
    from torch.distributed.fsdp import fully_shard

    for block in model.blocks:
        fully_shard(block)
    fully_shard(model)


def _full(fn, *args, **kwargs):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return fn(*args, options=StateDictOptions(full_state_dict=True, cpu_offload=True), **kwargs)


def full_state(model, ema, optimizer, sharded: bool) -> tuple:
    """(model, ema, optimizer) state dicts, whole; with FSDP a collective, complete on rank 0.
    The optimizer's state is keyed by parameter name in both cases, so that a checkpoint loads
    sharded or not, on any number of processes."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    if not sharded:
        return model.state_dict(), ema.state_dict(), get_optimizer_state_dict(model, optimizer)
    return (_full(get_model_state_dict, model), _full(get_model_state_dict, ema),
            _full(get_optimizer_state_dict, model, optimizer))


def load_full_state(state, model, ema, optimizer, sharded: bool) -> None:
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    optimizer_state = by_name(state["optimizer"], model)
    if not sharded:
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        set_optimizer_state_dict(model, optimizer, optim_state_dict=optimizer_state)
        return
    _full(set_model_state_dict, model, state["model"])
    _full(set_model_state_dict, ema, state["ema"])
    _full(set_optimizer_state_dict, model, optimizer, optim_state_dict=optimizer_state)


def by_name(optimizer_state: dict, model) -> dict:
    """An optimizer state dict keyed by parameter name; one of an earlier version (plain
    optimizer.state_dict(): numbered in the order of the trained parameters) renamed."""
    groups = optimizer_state["param_groups"]
    if not groups or not groups[0]["params"] or isinstance(groups[0]["params"][0], str):
        return optimizer_state
    names = [name for name, parameter in model.named_parameters() if parameter.requires_grad]
    return {"state": {names[index]: moments for index, moments in optimizer_state["state"].items()},
            "param_groups": [{**group, "params": [names[index] for index in group["params"]]} for group in groups]}
