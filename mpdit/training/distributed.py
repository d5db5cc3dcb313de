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
    """(model, ema, optimizer) state dicts, whole; with FSDP a collective, complete on rank 0."""
    if not sharded:
        return model.state_dict(), ema.state_dict(), optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    return (_full(get_model_state_dict, model), _full(get_model_state_dict, ema),
            _full(get_optimizer_state_dict, model, optimizer))


def load_full_state(state, model, ema, optimizer, sharded: bool) -> None:
    if not sharded:
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        return
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    _full(set_model_state_dict, model, state["model"])
    _full(set_model_state_dict, ema, state["ema"])
    _full(set_optimizer_state_dict, model, optimizer, optim_state_dict=state["optimizer"])
