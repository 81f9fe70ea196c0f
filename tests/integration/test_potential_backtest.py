"""`tiering backtest-potential` on a small generated source: the BG/NBD + Gamma-Gamma model must
predict the hold-out totals better than the naive "same as the last period" predictor.

Calibration up to 2024-09 and a 6-month hold-out (2024-10 .. 2025-03): the naive predictor repeats
2024-04 .. 2024-09. The demo data are seasonal (dip in July/August, peak in November/December) and
the model is not: docs/potential.md lists the windows where the naive predictor's total is closer
(e.g. a 6-month hold-out from January, whose last period holds the peak in the calibration)."""
from __future__ import annotations

import json

import pytest

from tiering.cli import main


@pytest.fixture(scope="module")
def backtest_source(tmp_path_factory):
    from tiering.demo import generate

    out = tmp_path_factory.mktemp("backtest") / "source"
    generate(out, customers=400, months=18, seed=3, start_month="2024-01")
    return out


def test_model_beats_naive_on_the_totals(backtest_source, capsys):
    code = main(["backtest-potential", "--source", str(backtest_source), "--calibration-end", "2024-09",
                 "--holdout-months", "6", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["holdout"] == "2024-10 .. 2025-03"
    assert result["customers"] == result["fitted_customers"] > 300
    model, naive = result["model"], result["naive"]
    for what in ("purchases", "revenue"):
        assert model[what]["actual_total"] == naive[what]["actual_total"] > 0
        assert abs(model[what]["total_error"]) < abs(naive[what]["total_error"]), what
        # and it ranks customers at least as well as the naive predictor
        assert model[what]["correlation"] > 0.6
        assert model[what]["top20_capture"] >= naive[what]["top20_capture"] - 0.05
    assert result["fit_seconds"] < 30


def test_backtest_rejects_bad_arguments(backtest_source, capsys):
    assert main(["backtest-potential", "--source", str(backtest_source), "--calibration-end", "2024-13",
                 "--holdout-months", "3"]) == 1
    assert "bad month '2024-13'" in capsys.readouterr().err
    assert main(["backtest-potential", "--source", str(backtest_source), "--calibration-end", "2024-09",
                 "--holdout-months", "0"]) == 1
    assert "--holdout-months must be at least 1" in capsys.readouterr().err
