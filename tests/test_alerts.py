"""The alert rules (docs/prometheus-alerts.yml) and the dashboard's queries
(docs/grafana-dashboard.json), checked by the real ``promtool``:

- ``promtool check rules`` on the alert rules;
- ``promtool test rules`` on tests/data/prometheus-alerts.test.yml, where every alert is fed the
  series the service exports and must fire (with its labels and annotations) in one test and
  stay quiet in another;
- every query of the dashboard, its Grafana variables replaced by values, written as a
  recording rule and checked by ``promtool check rules``.

Each check is also run on a broken copy, to show that it fails. ``promtool`` is looked up on
the PATH, then in .venv/bin (``scripts/setup-promtool.sh`` puts it there). Where it is missing
the tests that need it skip, except with AGENTDOCK_REQUIRE_DOCKER=1 or CI=true, where that is a
failure."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.metrics import instruments

HERE = Path(__file__).parent
REPO = HERE.parent
ALERTS = REPO / "docs" / "prometheus-alerts.yml"
DASHBOARD = REPO / "docs" / "grafana-dashboard.json"
ALERT_TESTS = HERE / "data" / "prometheus-alerts.test.yml"
VENV_PROMTOOL = REPO / ".venv" / "bin" / "promtool"
PROMTOOL_TIMEOUT_S = 60

# Grafana's own variables, and the value every dashboard variable gets in a checked query.
GRAFANA_VARIABLES = {"__rate_interval": "1m", "__interval": "1m", "__range": "1h"}
VARIABLE_VALUE = "agentdock:8000"
# $name, ${name}, ${name:format}, [[name]]
VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)(?::\w+)?\]\]")
# The labels Prometheus adds to every series it scrapes.
TARGET_LABELS = frozenset({"instance", "job"})


def promtool_required() -> bool:
    return os.environ.get("AGENTDOCK_REQUIRE_DOCKER") == "1" or os.environ.get("CI") == "true"


@pytest.fixture(scope="session")
def promtool() -> str:
    """The promtool binary: on the PATH, or the one scripts/setup-promtool.sh extracted."""
    found = shutil.which("promtool")
    if found is None and VENV_PROMTOOL.is_file() and os.access(VENV_PROMTOOL, os.X_OK):
        found = str(VENV_PROMTOOL)
    if found is None:
        reason = f"promtool is neither on the PATH nor at {VENV_PROMTOOL.relative_to(REPO)}"
        if promtool_required():
            pytest.fail(f"{reason} (AGENTDOCK_REQUIRE_DOCKER/CI is set: the promtool checks must run)")
        pytest.skip(f"{reason}; run scripts/setup-promtool.sh")
    return found


def run_promtool(promtool: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *map(str, args)], check=False, capture_output=True, text=True, timeout=PROMTOOL_TIMEOUT_S
    )


def output(done: subprocess.CompletedProcess[str]) -> str:
    return f"promtool exited {done.returncode}\n{done.stdout}{done.stderr}"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def alert_rules(rules: Any) -> dict[str, dict[str, Any]]:
    """Every alerting rule of a rules file, by alert name."""
    return {rule["alert"]: rule for group in rules["groups"] for rule in group["rules"] if "alert" in rule}


def alert_tests(alert: str | None = None) -> list[dict[str, Any]]:
    """The unit tests' groups; with ``alert``, only its cases (and the groups that have some)."""
    groups: list[dict[str, Any]] = load_yaml(ALERT_TESTS)["tests"]
    if alert is None:
        return groups
    for group in groups:
        group["alert_rule_test"] = [case for case in group.get("alert_rule_test", []) if case["alertname"] == alert]
    return [group for group in groups if group["alert_rule_test"]]


def run_alert_tests(
    promtool: str, rules: Path, tmp_path: Path, alert: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``promtool test rules`` of the unit tests (only those of ``alert``, if given), run
    against the rules file ``rules``."""
    tests = load_yaml(ALERT_TESTS)
    tests["rule_files"] = [str(rules)]
    tests["tests"] = alert_tests(alert)
    copy = tmp_path / "alerts.test.yml"
    copy.write_text(yaml.safe_dump(tests, sort_keys=False))
    return run_promtool(promtool, "test", "rules", copy)


# --- the alert rules --------------------------------------------------------------------------


def test_promtool_checks_the_alert_rules(promtool: str) -> None:
    done = run_promtool(promtool, "check", "rules", ALERTS)
    assert done.returncode == 0, output(done)
    count = sum(len(group["rules"]) for group in load_yaml(ALERTS)["groups"])
    assert f"SUCCESS: {count} rules found" in done.stdout, output(done)


def test_promtool_check_rejects_a_broken_rule(promtool: str, tmp_path: Path) -> None:
    broken = tmp_path / "alerts.yml"
    text = ALERTS.read_text()
    assert "[15m])" in text
    broken.write_text(text.replace("[15m])", "[15m)", 1))
    done = run_promtool(promtool, "check", "rules", broken)
    assert done.returncode != 0, output(done)
    assert "parse" in done.stdout + done.stderr, output(done)


def test_the_alerts_pass_their_unit_tests(promtool: str, tmp_path: Path) -> None:
    done = run_alert_tests(promtool, ALERTS, tmp_path)
    assert done.returncode == 0, output(done)
    assert "SUCCESS" in done.stdout, output(done)


def test_the_unit_tests_name_the_alert_rules_of_the_docs() -> None:
    """Run by hand (``promtool test rules tests/data/prometheus-alerts.test.yml``), the unit
    tests read docs/prometheus-alerts.yml and nothing else."""
    rule_files = load_yaml(ALERT_TESTS)["rule_files"]
    assert [(ALERT_TESTS.parent / path).resolve() for path in rule_files] == [ALERTS.resolve()]


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    alerts = set(alert_rules(load_yaml(ALERTS)))
    firing: set[str] = set()
    quiet: set[str] = set()
    for group in alert_tests():
        for case in group.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
            for expected in case.get("exp_alerts") or []:
                assert expected.get("exp_annotations"), f"{group['name']}: expected annotations missing"
    assert alerts, ALERTS
    assert alerts - firing == set(), "alerts never tested firing"
    assert alerts - quiet == set(), "alerts never tested staying quiet"
    assert (firing | quiet) - alerts == set(), "unit tests of alerts that do not exist"


def test_the_unit_tests_feed_the_series_the_service_exports() -> None:
    """Every input series is a metric of service/metrics/instruments.py (or ``up``), by its
    exposed name, with exactly its labels and the target's."""
    exported: dict[str, frozenset[str]] = {"up": frozenset()}
    for instrument in instruments.INSTRUMENTS:
        labels = frozenset(instrument._labelnames)
        name = next(iter(instrument.describe())).name
        if instrument._type == "counter":
            exported[f"{name}_total"] = labels
        elif instrument._type == "histogram":
            for suffix in ("_bucket", "_count", "_sum"):
                exported[name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
        else:
            exported[name] = labels
    for name, (_, gauge_labels) in instruments.GAUGES.items():
        exported[name] = frozenset(gauge_labels)

    for group in alert_tests():
        for series in group["input_series"]:
            match = re.fullmatch(r"(\w+)\{(.*)\}", series["series"])
            assert match, series["series"]
            name, labels = match[1], frozenset(re.findall(r"(\w+)=\"", match[2]))
            assert name in exported, f"{group['name']}: {name} is no series the service exports"
            assert labels == exported[name] | TARGET_LABELS, f"{group['name']}: labels of {series['series']}"


def alert_names_in(text: str) -> set[str]:
    return set(re.findall(r"alertname: (\w+)", text))


@pytest.mark.parametrize("alert", sorted(alert_rules(load_yaml(ALERTS))))
def test_the_unit_tests_catch_an_alert_that_never_or_always_fires(promtool: str, tmp_path: Path, alert: str) -> None:
    """The alert's expression replaced, in a copy of the rules, by one that never fires, then by
    one that always does: each of its tests that expects it firing, then each that expects it
    quiet, must fail."""
    groups = alert_tests(alert)
    for expr, expecting in (("vector(1) < 0", "firing"), ("vector(1)", "quiet")):
        rules = load_yaml(ALERTS)
        alert_rules(rules)[alert]["expr"] = expr
        broken = tmp_path / f"alerts-{expecting}.yml"
        broken.write_text(yaml.safe_dump(rules, sort_keys=False))
        done = run_alert_tests(promtool, broken, tmp_path, alert)
        assert done.returncode != 0, f"{alert} as {expr!r}: the unit tests still pass\n{output(done)}"
        report = done.stdout + done.stderr
        assert alert_names_in(report) == {alert}, output(done)
        names = {
            group["name"]
            for group in groups
            for case in group["alert_rule_test"]
            if ("firing" if case.get("exp_alerts") else "quiet") == expecting
        }
        assert names, f"{alert}: no test expects it {expecting}"
        for name in names:
            assert f"name: {name}," in report, f"{alert} as {expr!r}: {name!r} did not fail\n{output(done)}"


# --- the dashboard's queries ------------------------------------------------------------------


def panels(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The dashboard's panels, those inside rows included."""
    found: list[dict[str, Any]] = []
    for panel in items:
        found.append(panel)
        found.extend(panels(panel.get("panels", [])))
    return found


def substitute(expr: str, variables: dict[str, dict[str, Any]], where: str) -> str:
    """``expr`` with every Grafana variable replaced by a value. A variable the dashboard does
    not define, or a multi-value one matched with ``=`` (Grafana gives it a regex), is an error."""
    for match in re.finditer(r"(\w+)\s*(=~|!~|!=|=)\s*\"[^\"]*\$\{?(\w+)", expr):
        variable = variables.get(match[3], {})
        if (variable.get("multi") or variable.get("includeAll")) and match[2] not in ("=~", "!~"):
            raise ValueError(f"{where}: ${match[3]} has several values and needs =~, not {match[2]}: {expr}")

    def value(match: re.Match[str]) -> str:
        name = match[1] or match[2] or match[3]
        if name in GRAFANA_VARIABLES:
            return GRAFANA_VARIABLES[name]
        if name in variables:
            return VARIABLE_VALUE
        raise ValueError(f"{where}: unknown variable ${name} in {expr}")

    return VARIABLE.sub(value, expr)


def dashboard_queries(dashboard: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Every PromQL query of the dashboard, its variables substituted: recording rule name →
    (where it is, the query). The panels' targets, and the query variables' metric selectors."""
    variables = {variable["name"]: variable for variable in dashboard.get("templating", {}).get("list", [])}
    queries: dict[str, tuple[str, str]] = {}
    for index, panel in enumerate(panels(dashboard["panels"])):
        for target in panel.get("targets", []):
            if not target.get("expr"):
                continue
            where = f"panel {panel.get('id', index)} ({panel.get('title', '')!r}) target {target.get('refId', '')}"
            name = f"dashboard:panel_{panel.get('id', index)}_{target.get('refId', len(queries))}"
            assert name not in queries, f"{where}: two targets named {name}"
            queries[name] = (where, substitute(target["expr"], variables, where))
    for name, variable in variables.items():
        if variable.get("type") != "query":
            continue
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        match = re.fullmatch(r"\s*(?:label_values\((.+),\s*\w+\)|query_result\((.+)\))\s*", query)
        if match and (match[1] or match[2]):
            where = f"variable ${name}"
            queries[f"dashboard:variable_{name}"] = (where, substitute(match[1] or match[2], variables, where))
    return queries


def check_dashboard(promtool: str, dashboard: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    queries = dashboard_queries(dashboard)
    rules = {
        "groups": [
            {
                "name": "grafana-dashboard",
                "rules": [
                    {"record": name, "expr": expr, "labels": {"where": where}}
                    for name, (where, expr) in queries.items()
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return run_promtool(promtool, "check", "rules", path)


def test_every_dashboard_query_is_valid_promql(promtool: str, tmp_path: Path) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = dashboard_queries(dashboard)
    targets = [t for p in panels(dashboard["panels"]) for t in p.get("targets", []) if t.get("expr")]
    assert len(targets) > 0
    done = check_dashboard(promtool, dashboard, tmp_path)
    assert done.returncode == 0, output(done)
    assert f"SUCCESS: {len(queries)} rules found" in done.stdout, output(done)


def test_the_dashboard_check_rejects_a_broken_query(promtool: str, tmp_path: Path) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    target = next(
        t
        for p in panels(dashboard["panels"])
        for t in p.get("targets", [])
        if "[$__rate_interval]" in t.get("expr", "")
    )
    target["expr"] = target["expr"].replace("[$__rate_interval]", "[$__rate_interval", 1)
    done = check_dashboard(promtool, dashboard, tmp_path)
    assert done.returncode != 0, output(done)
    assert "parse" in done.stdout + done.stderr, output(done)


def test_the_dashboard_check_rejects_unknown_and_misused_variables() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    target = next(t for p in panels(dashboard["panels"]) for t in p.get("targets", []) if t.get("expr"))
    original = target["expr"]
    target["expr"] = original.replace('instance=~"$instance"', 'instance=~"$instance",project="$project"')
    with pytest.raises(ValueError, match=r"unknown variable \$project"):
        dashboard_queries(dashboard)
    target["expr"] = original.replace('instance=~"$instance"', 'instance="$instance"')
    with pytest.raises(ValueError, match=r"needs =~"):
        dashboard_queries(dashboard)
