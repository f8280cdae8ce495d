"""The t interval of a mean difference: quantiles against a printed table, the interval by hand."""

import math

import pytest

from dih.report.confidence import mean_interval, t_cdf, t_quantile

# Two-sided 95% (p = 0.975) and 99% (p = 0.995) critical values of Student's t, as printed in standard tables.
TABLE_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 10: 2.228, 20: 2.086, 30: 2.042, 120: 1.980}
TABLE_995 = {1: 63.657, 2: 9.925, 3: 5.841, 10: 3.169, 30: 2.750}


@pytest.mark.parametrize(("p", "table"), [(0.975, TABLE_975), (0.995, TABLE_995)])
def test_quantiles_match_the_printed_table(p, table):
    for df, printed in table.items():
        assert t_quantile(p, df) == pytest.approx(printed, abs=5e-4), df


def test_quantile_inverts_the_cdf_and_tends_to_the_normal():
    for df in (1, 2, 7, 50):
        for p in (0.01, 0.3, 0.5, 0.9, 0.999):
            assert t_cdf(t_quantile(p, df), df) == pytest.approx(p, abs=1e-10)
        assert t_cdf(-1.3, df) == pytest.approx(1 - t_cdf(1.3, df), abs=1e-12)
    assert t_quantile(0.975, 10**7) == pytest.approx(1.959964, abs=1e-5)
    # df = 1 is the Cauchy distribution: P(T <= t) = 1/2 + atan(t)/pi
    assert t_cdf(3.0, 1) == pytest.approx(0.5 + math.atan(3.0) / math.pi, abs=1e-12)
    with pytest.raises(ValueError):
        t_quantile(1.0, 3)


def test_interval_of_three_differences_by_hand():
    diffs = [1.7, -0.7, 4.5]  # mean 1.8333, sample std 2.6026
    mean = sum(diffs) / 3
    std = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 2)
    half = TABLE_975[2] * std / math.sqrt(3)
    low, high = mean_interval(diffs)
    assert (low, high) == (pytest.approx(mean - half, abs=1e-3), pytest.approx(mean + half, abs=1e-3))
    assert mean_interval([2.0]) is None
