"""The training order: the sampler's global batches are the same on any world and micro-batch,
and it resumes at a position given in global samples."""
import pytest

from mpdit.training.data import DataPosition, ResumableSampler


def _steps(size, global_batch, micro, world, steps, start=DataPosition()):
    """The sets of items each of `steps` optimizer steps sees, over all ranks."""
    ranks = [iter(ResumableSampler(size, global_batch, micro, r, world, seed=3, start=start)) for r in range(world)]
    return [sorted(next(ranks[r]) for r in range(world) for _ in range(global_batch // world)) for _ in range(steps)]


def test_sampler_steps_are_the_same_global_batches_on_any_world_and_micro_batch():
    """22 items, global batch 4: 5 steps per epoch (2 items left out), then a new permutation."""
    one = _steps(22, 4, micro=4, world=1, steps=12)
    assert sorted(item for step in one[:5] for item in step) != list(range(22))  # 20 of the 22
    assert len({item for step in one[:5] for item in step}) == 20
    assert one[5:10] != one[:5]  # epoch 1: another order
    for world, micro in ((2, 1), (2, 2), (4, 1)):
        assert _steps(22, 4, micro, world, steps=12) == one, (world, micro)


def test_sampler_resumes_at_a_position_in_global_samples():
    one = _steps(22, 4, micro=2, world=1, steps=12)
    for done in (3, 5, 7):
        position = DataPosition().advance(done, 4, 22)
        assert _steps(22, 4, micro=1, world=2, steps=12 - done, start=position) == one[done:], done
    assert DataPosition().advance(7, 4, 22) == DataPosition(1, 8)
    assert DataPosition(0, 12).advance(2, 4, 22) == DataPosition(1, 0)  # 16 + 4 > 22: the epoch ends
    with pytest.raises(ValueError, match="global batch 6: expected a multiple of 4 processes x micro-batch 1"):
        ResumableSampler(22, 6, 1, world=4)
