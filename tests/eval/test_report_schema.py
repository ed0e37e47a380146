"""`tokenmill report` on an evaluation of an older schema says so instead of failing on a missing key."""

import json

import pytest

from tasks.eval.report import REPORT_INPUTS, render_report


def test_an_older_metrics_schema_is_refused_by_name(tmp_path):
    for name in REPORT_INPUTS:
        (tmp_path / name).write_text("{}")
    (tmp_path / "metrics.json").write_text(json.dumps({"schema_version": 1, "headline": {"beats_bow_baseline": True}}))
    with pytest.raises(ValueError, match="schema version 1"):
        render_report(tmp_path)
