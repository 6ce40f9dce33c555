"""The benchmark's side-by-side comparison: the tutorial's step against ours, interleaved.

No timing is judged: the tests check that every participant runs in its rounds and that the
reported medians and ratios are the ones its own timings give. The real steps (the tutorial's
and ours in float32 and bfloat16) are checked in the benchmark's own run
(tests/test_performance.py), which times them side by side.
"""

from __future__ import annotations

import statistics

import pytest
from sleepers import broken, sleeper

from pix2pix_tf.benchmark import report, sidebyside


def check_figures(result: sidebyside.SideBySide, names: list[str], rounds: int) -> None:
    assert list(result.median_seconds) == names and result.baseline == names[0]
    assert result.rounds == rounds and len(result.load_average) == 2
    base = result.round_seconds[names[0]]
    for name in names:
        per_round = result.round_seconds[name]
        assert len(per_round) == rounds and all(s > 0 for s in per_round)
        assert result.median_seconds[name] == statistics.median(per_round)
        assert result.over_baseline[name] == pytest.approx(statistics.median(base) / statistics.median(per_round))
        assert result.round_over_baseline[name] == pytest.approx([b / s for b, s in zip(base, per_round)])
    assert result.over_baseline[names[0]] == 1.0


def test_interleaved_rounds_report_each_participants_median_and_ratio():
    participants = [sidebyside.Participant("slow", "sleeps 20 ms", sleeper, (0.02,)),
                    sidebyside.Participant("fast", "sleeps 5 ms", sleeper, (0.005,))]
    result = sidebyside.interleave(participants, rounds=3, steps=2)
    check_figures(result, ["slow", "fast"], 3)
    assert result.steps_per_round == 2
    text = "\n".join(report.format_side_by_side(result))
    assert "3 interleaved rounds of 2 steps" in text and "(sleeps 5 ms)" in text


def test_a_failing_participant_is_reported_by_name():
    participants = [sidebyside.Participant("fine", "", sleeper, (0.001,)),
                    sidebyside.Participant("broken", "", broken)]
    with pytest.raises(RuntimeError, match="'broken' failed(.|\n)*no step here"):
        sidebyside.interleave(participants, rounds=1, steps=1)
