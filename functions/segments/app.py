"""Segments: the hourly tick (time-driven membership changes, from the hourly index: no scan), the tasks of
segment builds (a Distributed Map over the segments of a parallel scan), and the deploy hook that builds
new and changed segments."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from cairn.bootstrap import runtime

logger = Logger()
tracer = Tracer()
metrics = Metrics()
segments = runtime().segments


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return segments.handle(event, context.get_remaining_time_in_millis)
