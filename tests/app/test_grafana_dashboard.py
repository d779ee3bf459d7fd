"""docs/grafana-dashboard.json is valid JSON and graphs only metrics the service exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import app.metrics
from app.api import metrics as api_metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"


def test_every_panel_queries_an_exported_metric() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exported = set(re.findall(r'"(dealcoach_[a-z_]+)"', Path(app.metrics.__file__).read_text()))
    exported |= set(re.findall(r'"(dealcoach_[a-z_]+)"', Path(api_metrics.__file__).read_text()))
    assert len(dashboard["panels"]) >= 8
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            names = re.findall(r"dealcoach_[a-z_]+", target["expr"])
            assert names, panel["title"]
            for name in names:
                base = re.sub(r"_(bucket|count|sum|total)$", "", name)
                assert name in exported or base in exported, (panel["title"], name)
