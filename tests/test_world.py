"""mpdit.world: one process or torchrun; the device a worker takes, and advice on restarts."""
import pytest
import torch


def test_restarts_with_a_shared_rendezvous_store_are_warned_of():
    from mpdit.world import restart_advice

    shared = {"TORCHELASTIC_MAX_RESTARTS": "3", "TORCHELASTIC_USE_AGENT_STORE": "True"}
    assert "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1" in restart_advice(shared)
    assert restart_advice({**shared, "TORCHELASTIC_USE_AGENT_STORE": "False"}) == ""
    assert restart_advice({**shared, "TORCHELASTIC_MAX_RESTARTS": "0"}) == ""
    assert restart_advice({}) == ""


def test_the_device_is_the_local_rank_not_the_global_rank(monkeypatch):
    """Rank 5 of 8, the second worker of its node: cuda:1 (DiT's device_ids=[rank] fails on node 2)."""
    import mpdit.world as world

    chosen = []
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("RANK", "5")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setattr(world.dist, "init_process_group", lambda backend: chosen.append(backend))
    monkeypatch.setattr(world.dist, "get_rank", lambda: 5)
    result = world.init_world()
    assert chosen == [1, "nccl"] and result.device == torch.device("cuda", 1) and result.rank == 5


@pytest.fixture
def group_calls(monkeypatch):
    """The calls close_world makes, in order, on a stand-in two-process CPU group."""
    import mpdit.world as world

    calls = []
    monkeypatch.setattr(world.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(world.dist, "barrier", lambda **kwargs: calls.append("barrier"))
    monkeypatch.setattr(world.gc, "collect", lambda: calls.append("collect"))
    monkeypatch.setattr(world.dist, "destroy_process_group", lambda: calls.append("destroy"))
    monkeypatch.setattr(world, "init_world", lambda: world.World(rank=1, size=2))
    return calls


def test_a_process_group_ends_after_the_ranks_meet_and_its_holders_are_collected(group_calls):
    """Without the collection FSDP's module cycles keep the group and its gloo threads alive past
    destroy_process_group, to be torn down during interpreter exit ("terminate called without an
    active exception" on one rank, seen once under load)."""
    from mpdit.world import World, close_world

    close_world(World(rank=1, size=2))
    assert group_calls == ["barrier", "collect", "destroy"]
    close_world(World())  # one process: no group
    assert group_calls == ["barrier", "collect", "destroy"]


def test_joined_world_meets_only_when_its_work_ended_well(group_calls):
    from mpdit.world import joined_world

    with joined_world() as world:
        assert world.size == 2
    assert group_calls == ["barrier", "collect", "destroy"]
    group_calls.clear()
    with pytest.raises(RuntimeError, match="a rank failed"):  # its peers may never reach a barrier
        with joined_world():
            raise RuntimeError("a rank failed")
    assert group_calls == ["collect", "destroy"]
