"""Stream consumer: events and contact changes -> goals, exits and enrollments, in order per contact."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.typing import LambdaContext

from cairn.bootstrap import runtime
from cairn.services.react import Reactor
from cairn.services.stream import InOrder

logger = Logger()
tracer = Tracer()
metrics = Metrics()
reactor = Reactor(runtime())
processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(
        event=event, record_handler=InOrder(reactor), processor=processor, context=context
    )
