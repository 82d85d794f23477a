import pytest

from sliminfer.offload.policy import overlap, should_swap


@pytest.mark.parametrize(
    ("new", "resident", "want"),
    [
        ([1, 3, 6, 8], [1, 2, 4, 5], 0.25),  # the paper's Figure 4: only B1 shared
        ([1, 2], [2, 1], 1.0),
        ([1, 2, 3, 4], [5, 6, 7, 8], 0.0),
        ([1, 2], [1, 2, 3, 4], 1.0),  # normalized by |new|, not Jaccard (which would be 0.5)
        ([], [1], 1.0),
    ],
)
def test_overlap_is_the_share_of_new_blocks_already_resident(new, resident, want):
    assert overlap(new, resident) == pytest.approx(want)


def test_should_swap_only_below_gamma():
    assert should_swap(0.25, 0.5)
    assert not should_swap(0.5, 0.5)
    assert not should_swap(0.0, 0.0)  # gamma 0 never swaps
    assert should_swap(0.99, 1.0) and not should_swap(1.0, 1.0)  # gamma 1: any difference swaps
