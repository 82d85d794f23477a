import pytest
import torch

from sliminfer.offload.policy import holds_top_block, plan_swaps, resident_after, swap_cap


def plan(active, resident, gamma, cap=0, n_blocks=10, scores=None):
    scores = torch.arange(n_blocks, dtype=torch.float32) if scores is None else torch.tensor(scores)
    return plan_swaps(scores, torch.tensor(active), torch.tensor(resident), gamma, swap_cap(cap, len(resident)))


@pytest.mark.parametrize(
    ("new", "resident", "want"),
    [
        ([1, 3, 6, 8], [1, 2, 4, 5], 0.25),  # the paper's Figure 4: only B1 shared
        ([1, 2], [2, 1], 1.0),
        ([1, 2, 3, 4], [5, 6, 7, 8], 0.0),
    ],
)
def test_overlap_is_the_share_of_new_blocks_already_resident(new, resident, want):
    assert float(plan(new, resident, 0.0).overlap) == pytest.approx(want)


def test_swaps_only_below_gamma():
    assert int(plan([1, 3, 6, 8], [1, 2, 4, 5], 0.5).count) == 3
    assert int(plan([1, 3, 6, 8], [1, 2, 4, 5], 0.25).count) == 0  # overlap 0.25 is not < 0.25
    assert int(plan([1, 3], [2, 4], 0.0).count) == 0  # gamma 0 never swaps
    assert int(plan([1, 2, 3, 4], [1, 2, 3, 5], 1.0).count) == 1  # gamma 1: any difference swaps
    assert int(plan([1, 2], [2, 1], 1.0).count) == 0


def test_uncapped_swap_pairs_missing_and_stale_in_ascending_order():
    swap = plan([1, 3, 6, 8], [5, 1, 4, 2], 1.0)
    count = int(swap.count)
    assert count == 3 and int(swap.missing) == 3
    assert swap.block_ids[:count].tolist() == [3, 6, 8] and swap.slots[:count].tolist() == [0, 2, 3]
    assert swap.slots[count:].tolist() == [4] and swap.block_ids[count:].tolist() == [0]  # an unused row
    assert resident_after(torch.tensor([5, 1, 4, 2]), swap).tolist() == [3, 1, 6, 8]


def test_a_cap_brings_in_the_best_missing_blocks_over_the_worst_stale_ones():
    scores = [0.0, 5.0, 0.2, 9.0, 0.1, 0.3, 7.0, 8.0, 6.0, 0.0]
    swap = plan([1, 3, 6, 8], [5, 1, 4, 2], 1.0, cap=2, scores=scores)
    assert int(swap.count) == 2 and int(swap.missing) == 3  # one block deferred
    assert swap.block_ids.tolist() == [3, 6] and swap.slots.tolist() == [2, 3]  # 3, 6 in; blocks 4 and 2 out
    assert resident_after(torch.tensor([5, 1, 4, 2]), swap).tolist() == [5, 1, 3, 6]


def test_swap_cap_and_top_block():
    assert swap_cap(0, 12) == 12 and swap_cap(4, 12) == 4 and swap_cap(40, 12) == 12
    scores, forced = torch.tensor([9.0, 1.0, 3.0, 2.0]), torch.tensor([True, False, False, False])
    assert holds_top_block(scores, forced, torch.tensor([0, 2]))  # the forced sink does not count
    assert not holds_top_block(scores, forced, torch.tensor([0, 1, 3]))
