"""State machine tasks other than sends: interruptible waits, branches, the end of a run."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from cairn.bootstrap import runtime
from cairn.services.steps import Steps

logger = Logger()
tracer = Tracer()
metrics = Metrics()
steps = Steps(runtime())


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return steps.handle(event)
