from types import SimpleNamespace

from harness.train.oom_check import largest_fitting_duration


def _cuts(*durations):
    return [SimpleNamespace(duration=d) for d in durations]


def test_finds_the_largest_shortest_first_batch_that_fits():
    cuts = _cuts(5.0, 1.0, 4.0, 2.0, 3.0)  # 15 s in all, which does not fit
    tried = []

    def fits(part):
        tried.append(len(part))
        return sum(c.duration for c in part) <= 7.0

    assert largest_fitting_duration(cuts, fits) == 6.0  # 1 + 2 + 3
    assert len(tried) <= 3  # a binary search, not one try per cut


def test_nothing_fits():
    assert largest_fitting_duration(_cuts(2.0, 3.0), lambda part: False) == 0.0
