"""Riley et al. sample-size criteria against their published worked examples (pmsampsize)."""

import math

import pytest

from stroke_risk.evaluation.sample_size import (
    cox_snell_r2_from_c,
    expected_shrinkage,
    max_cox_snell_r2,
    riley_sample_size,
)


def test_published_example_with_cox_snell_r2():
    # pmsampsize(type="b", csrsquared=0.288, parameters=24, prevalence=0.174):
    # criteria 623 / 662 / 221, final 662 (115 events, EPP 4.8).
    result = riley_sample_size(parameters=24, prevalence=0.174, cox_snell_r2=0.288)
    assert (result.n_shrinkage, result.n_optimism, result.n_overall_risk) == (623, 662, 221)
    assert result.required_n == 662
    assert result.required_events == pytest.approx(115.19, abs=0.01)
    assert result.events_per_parameter == pytest.approx(4.80, abs=0.01)


def test_published_example_with_c_statistic():
    # pmsampsize(type="b", cstatistic=0.89, parameters=24, prevalence=0.174):
    # criteria 615 / 660 / 221, final 660 (their R2_CS comes from a seeded simulation).
    result = riley_sample_size(parameters=24, prevalence=0.174, c_statistic=0.89)
    assert (result.n_shrinkage, result.n_optimism, result.n_overall_risk) == (615, 660, 221)
    assert result.required_n == 660


def test_max_r2_and_c_to_r2_behave():
    assert max_cox_snell_r2(0.5) == pytest.approx(0.75)
    assert cox_snell_r2_from_c(0.7, 0.05) < cox_snell_r2_from_c(0.8, 0.05)
    assert 0 < cox_snell_r2_from_c(0.99, 0.05) < max_cox_snell_r2(0.05)
    with pytest.raises(ValueError, match="c_statistic"):
        cox_snell_r2_from_c(0.4, 0.05)


def test_inputs_are_checked():
    with pytest.raises(ValueError, match="exactly one"):
        riley_sample_size(parameters=10, prevalence=0.1)
    with pytest.raises(ValueError, match="Cox-Snell R2"):
        riley_sample_size(parameters=10, prevalence=0.1, cox_snell_r2=0.9)


def test_expected_shrinkage_inverts_criterion_one():
    result = riley_sample_size(parameters=24, prevalence=0.174, cox_snell_r2=0.288)
    shrinkage = expected_shrinkage(parameters=24, n=result.n_shrinkage, cox_snell_r2=0.288)
    assert shrinkage == pytest.approx(0.9, abs=0.001)


@pytest.mark.parametrize("cox_snell_r2", [0.0, -1e-6])
def test_a_model_without_explained_variation_has_zero_expected_shrinkage(cox_snell_r2):
    assert expected_shrinkage(parameters=24, n=4000, cox_snell_r2=cox_snell_r2) == 0.0


@pytest.mark.parametrize("c_statistic", [0.5001, 0.52, 0.5427])
def test_expected_shrinkage_of_a_nearly_skill_free_model_is_small_and_solves_criterion_one(
    c_statistic,
):
    # The fixed-point iteration this replaces diverged here (ZeroDivisionError in the report).
    r2 = cox_snell_r2_from_c(c_statistic, 0.05)
    shrinkage = expected_shrinkage(parameters=30, n=3984, cox_snell_r2=r2)
    assert r2 < shrinkage < 0.5
    implied_n = 30 / ((shrinkage - 1) * math.log(1 - r2 / shrinkage))
    assert implied_n == pytest.approx(3984, rel=1e-6)
