"""The updating protocol on planted scenarios: how often it makes the right update.

Population: the deployed model's log-odds on the held-out test split
(reports/test_predictions.csv), resampled, so the label sets have the stroke model's own
spread of risks. For each scenario of stroke_risk.updating.simulation.planted_scenarios,
N_SETS label sets of N_LABELS outcomes are drawn from the planted truth and the protocol
of conf/updating/change_control.yaml (params.yaml's ``updating`` section) decides on each;
every update is then checked on a fresh label set of the same size and population.

Baseline in the same run: choosing the method by AIC on all labels (no closed test, no
held-out check), the "separate testing" Vergouwe et al. 2017 warn overfits.

Columns: the share of sets given each method, the wrong-update rate with its Monte-Carlo
standard error, and on fresh outcomes the mean calibration intercept, the share of its 95 %
CIs containing 0 and the mean calibration slope.

Usage: python -m benchmarks.updating [--sets 200] [--labels 4000] [--write-readme]
(--write-readme puts the table into README "Outcome labels", between its markers).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import expit

from benchmarks.readme_table import print_table
from stroke_risk.evaluation.calibration import LOGIT_CLIP
from stroke_risk.io import load_params
from stroke_risk.log_odds import logit
from stroke_risk.updating.protocol import PARAMETERS, Method, Protocol, fit_recalibrations
from stroke_risk.updating.settings import protocol_from_params
from stroke_risk.updating.simulation import (
    Scenario,
    draw_outcomes,
    monte_carlo_error,
    planted_scenarios,
    run_scenario,
)

README = Path(__file__).resolve().parents[1] / "README.md"
README_BLOCK = "updating-benchmark"


def resampler(log_odds: np.ndarray) -> Callable[[int, np.random.Generator], np.ndarray]:
    """Draw n deployed log-odds from the test split's, with replacement."""

    def sample(n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.choice(log_odds, size=n, replace=True)

    return sample


def aic_choice(y: np.ndarray, probability: np.ndarray) -> Method:
    """The baseline: the recalibration with the smallest AIC on all labels."""
    _, log_likelihoods = fit_recalibrations(y, probability)
    return min(log_likelihoods, key=lambda m: 2 * PARAMETERS[m] - 2 * log_likelihoods[m])


def aic_rates(
    scenario: Scenario,
    sample: Callable[[int, np.random.Generator], np.ndarray],
    n_sets: int,
    seed: int,
) -> Counter[str]:
    rng = np.random.default_rng(seed)
    methods: Counter[str] = Counter()
    for _ in range(n_sets):
        lp = sample(scenario.n_labels, rng)
        methods[aic_choice(draw_outcomes(lp, scenario, rng), expit(lp))] += 1
    return methods


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sets", type=int, default=200)
    parser.add_argument("--labels", type=int, default=4000)
    parser.add_argument("--few-labels", type=int, default=600)
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--write-readme", action="store_true")
    args = parser.parse_args()
    protocol: Protocol = protocol_from_params(load_params())
    deployed = logit(
        pd.read_csv("reports/test_predictions.csv")["probability"].to_numpy(), floor=LOGIT_CLIP
    )
    sample = resampler(deployed)
    rows = []
    started = time.perf_counter()
    for index, scenario in enumerate(
        planted_scenarios(deployed, n_labels=args.labels, few_labels=args.few_labels)
    ):
        result = run_scenario(
            scenario, protocol, n_sets=args.sets, seed=args.seed + index, sample_log_odds=sample
        )
        wrong = result.wrong_update_rate
        baseline = aic_rates(scenario, sample, args.sets, args.seed + 100 + index)
        baseline_wrong = (
            sum(n for m, n in baseline.items() if m not in ("keep", scenario.expected))
            if scenario.expected != "keep"
            else sum(n for m, n in baseline.items() if m != "keep")
        )
        rows.append(
            {
                "scenario": scenario.name,
                "labels": scenario.n_labels,
                "expected": scenario.expected,
                "keep": result.methods["keep"] / args.sets,
                "in the large": result.methods["recalibration_in_the_large"] / args.sets,
                "logistic": result.methods["logistic_recalibration"] / args.sets,
                "wrong updates": f"{wrong:.3f} ± {monte_carlo_error(wrong, args.sets):.3f}",
                "AIC baseline wrong": f"{baseline_wrong / args.sets:.3f}",
                "fresh CITL": _mean(result.fresh_intercepts),
                "CITL CI ∋ 0": _mean([float(c) for c in result.fresh_intercept_covers_zero]),
                "fresh slope": _mean(result.fresh_slopes),
                "more labels asked": _mean([float(n) for n in result.more_labels_needed]),
            }
        )
    table = pd.DataFrame(rows).to_markdown(index=False, floatfmt=".3f")
    note = (
        f"{args.sets} label sets per scenario (seed {args.seed}), the plan of params.yaml "
        f"(alpha {protocol.alpha:g}, >= {protocol.min_events} events and "
        f"{protocol.min_non_events} non-events, {protocol.held_out_fraction:.0%} held out); "
        f"`python -m benchmarks.updating`, {time.perf_counter() - started:.0f} s. "
        "Wrong updates: an update other than the expected one (± its Monte-Carlo standard "
        "error). The fresh columns average over the sets that were updated (under no change, "
        "the wrong updates); more labels asked: the mean the report asked for."
    )
    print_table(table, note, readme=README if args.write_readme else None, block=README_BLOCK)


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


if __name__ == "__main__":
    main()
