"""promtool unit tests for the written rules: every alert fires on synthetic series and stays silent on others.

``promtool test rules rules.test.yaml`` (beside ``rules.yaml``) evaluates the rules file on the
series of each test and compares the alerts with the expected ones, labels and annotations
included. Each alert of :func:`tritonkit.deploy.alerts.alert_rules` gets two tests from its
:class:`~tritonkit.deploy.alerts.Scenario` pair: one whose series cross its threshold (it must
fire once, with the labels and rendered annotations given) and one whose series stay on the
other side (it must not fire). The queue and failure recording rules are also checked for their
value: synthetic counters growing at a constant rate make the expected value exact.

The evaluation time is the alert's ``for`` plus :data:`SETTLE_MINUTES`, so a pending alert has
had time to fire and the 5-minute rate windows are full.
"""

from __future__ import annotations

from typing import Mapping

from tritonkit.deploy.alerts import AlertRule, RuleSpec, Scenario, alert_rules
from tritonkit.deploy.queries import FAILURE_RATIO_RECORD, QUEUE_RECORD

SETTLE_MINUTES = 10
RULES_FILE = "rules.yaml"


def _test(name: str, scenario: Scenario, alert: AlertRule) -> dict:
    expected = [] if scenario.fired is None else [
        {"exp_labels": {**scenario.fired, "severity": alert.severity},
         "exp_annotations": alert.annotations(scenario.fired)}]
    return {"name": name, "interval": "1m",
            "input_series": [{"series": s, "values": v} for s, v in scenario.series],
            "alert_rule_test": [{"eval_time": f"{alert.for_minutes + SETTLE_MINUTES}m", "alertname": alert.alert,
                                 "exp_alerts": expected}]}


def _value_test(rules: RuleSpec, alert: AlertRule, record: str) -> dict:
    """The firing scenario of ``alert`` again, checking that ``record`` has the scenario's value."""
    fired: Mapping[str, str] = alert.firing.fired or {}
    labels = ",".join(f'{k}="{v}"' for k, v in fired.items())
    return {"name": f"{record} of the {alert.alert} scenario", "interval": "1m",
            "input_series": [{"series": s, "values": v} for s, v in alert.firing.series],
            "promql_expr_test": [{"expr": rules.recorded(record), "eval_time": f"{SETTLE_MINUTES}m",
                                  "exp_samples": [{"labels": f"{record}{{{labels}}}", "value": alert.firing.value}]}]}


def promtool_tests(rules: RuleSpec) -> dict:
    """The promtool test file for the rules of ``rules`` (written beside :data:`RULES_FILE`)."""
    alerts = alert_rules(rules)
    tests = []
    for alert in alerts:
        tests.append(_test(f"{alert.alert} fires", alert.firing, alert))
        tests.append(_test(f"{alert.alert} stays silent", alert.silent, alert))
    by_name = {a.alert: a for a in alerts}
    tests.append(_value_test(rules, by_name["TritonkitQueueTimeHigh"], QUEUE_RECORD))
    tests.append(_value_test(rules, by_name["TritonkitFailureRatioHigh"], FAILURE_RATIO_RECORD))
    return {"rule_files": [RULES_FILE], "evaluation_interval": "1m", "tests": tests}
