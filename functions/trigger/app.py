"""HTTP intake: the v1 API behind API Gateway (HTTP API)."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from cairn.api.app import build_app
from cairn.bootstrap import runtime

logger = Logger()
tracer = Tracer()
metrics = Metrics()
rt = runtime()
app = build_app(rt)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
