"""Feedback: SES events (EventBridge) and SNS SMS delivery status logs -> message status, suppression and
reserved events (email_delivered, email_opened, email_clicked, email_bounced, email_complained,
sms_delivered, sms_failed)."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from cairn.bootstrap import runtime
from cairn.services.feedback import Feedback

logger = Logger()
tracer = Tracer()
metrics = Metrics()
feedback = Feedback(runtime())


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return feedback.handle(event)
