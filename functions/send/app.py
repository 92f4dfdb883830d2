"""Sends: gate, claim, render and deliver one message over SES v2 or SNS."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from cairn.bootstrap import runtime
from cairn.services.send import Sender

logger = Logger()
tracer = Tracer()
metrics = Metrics()
sender = Sender(runtime())


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return sender.send(event)
