"""The Grafana dashboard and the alert rules query only metrics the server really serves.

`/metrics` is scraped from the app after one review of each outcome; every metric name in a
dashboard target or rule expression must be one of its series names, or `up`, which Prometheus
adds to every scrape itself. tests/e2e/test_chart.py runs `promtool check rules` on the file.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from dracore.policy import Policy
from tests.builders import webhook_client

FILES = Path(__file__).resolve().parents[2] / "charts" / "kubectl-dra" / "files"
# PromQL words that are not metric names: aggregation/binary keywords (functions are followed by
# "(" and are dropped by the tokenizer below).
KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
}
SCRAPE_SERIES = {"up"}


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions, keywords,
    label names (inside {} or after by/without/on/ignoring), durations or numbers."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        rest = text[match.end() :].lstrip()
        if rest.startswith("(") or match.group() in KEYWORDS:
            continue
        names.add(match.group())
    return names


def test_the_tokenizer_finds_metric_names_only() -> None:
    expr = 'sum by (le) (rate(a_bucket{job="x", le!="1"}[5m])) / on(x) b_total > 0.5 or absent(up)'
    assert metric_names(expr) == {"a_bucket", "b_total", "up"}


def served_series() -> set[str]:
    client = webhook_client(policy=Policy.default())
    client.post("/mutate", data=b"not json")  # an invalid review, so every family has samples
    text = client.get("/metrics").text()
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def queries() -> dict[str, str]:
    found = {}
    dashboard = json.loads((FILES / "grafana-dashboard.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            found[f"dashboard panel {panel['title']!r} {target['refId']}"] = target["expr"]
    rules = yaml.safe_load((FILES / "prometheus-rules.yaml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            found[f"rule {rule.get('alert') or rule.get('record')}"] = rule["expr"]
    return found


def test_dashboard_and_rules_query_only_served_metrics() -> None:
    served = served_series() | SCRAPE_SERIES
    used = {where: metric_names(expr) for where, expr in queries().items()}
    unknown = {where: names - served for where, names in used.items() if names - served}
    assert unknown == {}
    # Each metric family the server exports is on the dashboard.
    on_dashboard = set().union(*(n for w, n in used.items() if w.startswith("dashboard")))
    families = {
        re.sub(r"_(total|bucket|sum|count|created)$", "", n) for n in served if n.startswith("dra_")
    }
    assert {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in on_dashboard} >= families
