"""template.yaml's statistics and operations: the stats table reaches every function that records or reads
statistics, the dashboard is valid JSON whose every reference resolves and shows every alarm, and the
alarms of the measurement issue exist with real metrics."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from tests.component.test_template import TEMPLATE_PATH, load_template

PSEUDO = {"AWS::StackName", "AWS::Region", "AWS::AccountId", "AWS::Partition", "AWS::URLSuffix"}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE_PATH)


def _policies(template: dict[str, Any], function: str) -> list[Any]:
    policies: list[Any] = template["Resources"][function]["Properties"]["Policies"]
    return policies


@pytest.mark.parametrize("function", ["ReactFunction", "StepFunction", "SendFunction", "FeedbackFunction"])
def test_functions_that_record_statistics_may_write_the_stats_table(
    template: dict[str, Any], function: str
) -> None:
    assert {"DynamoDBCrudPolicy": {"TableName": {"Ref": "StatsTable"}}} in _policies(template, function)


def test_the_api_may_read_the_stats_table(template: dict[str, Any]) -> None:
    assert {"DynamoDBReadPolicy": {"TableName": {"Ref": "StatsTable"}}} in _policies(
        template, "TriggerFunction"
    )


def _dashboard_body(template: dict[str, Any]) -> tuple[str, set[str]]:
    body = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    assert isinstance(body, str)
    refs = set(re.findall(r"\$\{([^}!]+)\}", body))
    return body, refs


def test_every_reference_of_the_dashboard_resolves(template: dict[str, Any]) -> None:
    _, refs = _dashboard_body(template)
    resources, parameters = template["Resources"], template["Parameters"]
    for ref in refs:
        name, _, attribute = ref.partition(".")
        assert name in PSEUDO or name in resources or name in parameters, ref
        if attribute:
            assert name in resources, ref
            assert attribute in ("Arn", "QueueName"), ref


def test_the_dashboard_is_valid_json_with_placed_widgets(template: dict[str, Any]) -> None:
    body, refs = _dashboard_body(template)
    for ref in refs:  # what CloudFormation substitutes: names, ARNs, and one number
        value = "80" if ref == "OpenExecutionsAlarmPercent" else f"value-of-{ref}"
        body = body.replace("${" + ref + "}", value)
    dashboard = json.loads(body)
    widgets = dashboard["widgets"]
    assert len(widgets) >= 10
    for widget in widgets:
        assert widget["type"] in ("text", "metric", "alarm")
        assert widget["x"] >= 0 and widget["x"] + widget["width"] <= 24
        if widget["type"] == "metric":
            assert widget["properties"]["metrics"], widget["properties"]["title"]
            assert widget["properties"]["region"] == "value-of-AWS::Region"
    titles = " ".join(w["properties"].get("title", "") for w in widgets)
    for shown in (
        "Entered",
        "Sent",
        "Converted",
        "Failed",
        "Held",
        "Skipped by reason",
        "Open executions, %",
    ):
        assert shown in titles


def test_every_alarm_of_the_stack_is_on_the_dashboard(template: dict[str, Any]) -> None:
    alarms = {n for n, r in template["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    _, refs = _dashboard_body(template)
    shown = {r.removesuffix(".Arn") for r in refs if r.endswith(".Arn")}
    assert alarms - shown == set(), "add the alarm to the Dashboard's alarm widget in template.yaml"
    assert shown - alarms == set()


def test_the_measurement_alarms_watch_real_metrics(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    open_executions = resources["OpenExecutionsAlarm"]["Properties"]
    assert open_executions["Threshold"] == {"Ref": "OpenExecutionsAlarmPercent"}
    assert template["Parameters"]["OpenExecutionsAlarmPercent"]["Default"] == 80
    assert "MetricName" not in open_executions  # a metric-math alarm, not one metric against a fixed count
    queries = {q["Id"]: q for q in open_executions["Metrics"]}
    watched = {
        q["MetricStat"]["Metric"]["MetricName"]: q["MetricStat"]
        for q in queries.values()
        if "MetricStat" in q
    }
    # AWS/States publishes both, dimensionless (account and region), Maximum as AWS recommends.
    assert set(watched) == {"OpenExecutionCount", "OpenExecutionLimit"}
    for stat in watched.values():
        assert stat["Metric"]["Namespace"] == "AWS/States" and "Dimensions" not in stat["Metric"]
        assert stat["Stat"] == "Maximum"
    (returned,) = [q for q in queries.values() if q.get("ReturnData")]
    assert _open_percent(returned["Expression"], open=800_000, quota=1_000_000) == 80
    assert _open_percent(returned["Expression"], open=800_000, quota=2_000_000) == 40  # a raised quota
    assert _open_percent(returned["Expression"], open=900_000, quota=None) == 90  # no limit data point
    body, _ = _dashboard_body(template)
    assert json.dumps(returned["Expression"]) in body  # the dashboard draws what the alarm watches
    rejected = resources["SendRejectedAlarm"]["Properties"]["Metrics"][0]["Expression"]
    assert "SendFailed" in rejected and '"Cairn"' in rejected
    for name in ("SesBounceRateAlarm", "SesComplaintRateAlarm", "SmsSpendAlarm", "ReactIteratorAgeAlarm"):
        assert name in resources
    assert resources["SesBounceRateAlarm"]["Properties"]["Threshold"] <= 0.05  # SES reviews at 5%
    assert resources["SesComplaintRateAlarm"]["Properties"]["Threshold"] <= 0.001  # and at 0.1%
    for name, resource in resources.items():
        if resource["Type"] == "AWS::CloudWatch::Alarm":
            assert resource["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}], name


def test_the_metric_names_the_functions_emit_are_the_ones_the_dashboard_reads(
    template: dict[str, Any],
) -> None:
    from cairn.services import stats

    body, _ = _dashboard_body(template)
    emitted = {
        *stats.METRIC_OF_MESSAGE.values(),
        *stats.METRIC_OF_END.values(),
        "Entered",
        "Converted",
        "Skipped",
    }
    read = set(re.findall(r'MetricName=\\"(\w+)\\"', body))
    assert read <= emitted


def _open_percent(expression: str, *, open: float, quota: float | None) -> float:
    """The open-executions alarm's metric math evaluated on one data point (FILL(m, v): m's value, or v
    where m has no data point)."""
    match = re.fullmatch(r"100 \* open / FILL\(quota, (\d+)\)", expression)
    assert match, expression
    return 100 * open / (quota if quota is not None else float(match.group(1)))
