"""In-process Lambda: each function's real `app.py`, loaded once (its cold start), called like Lambda."""

from __future__ import annotations

import importlib.util
import json
import threading
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from cairn.local.clock import VirtualClock


@dataclass
class LambdaContext:
    function_name: str
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = ""
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = ""

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


@dataclass
class LocalFunction:
    name: str
    logical_id: str
    code_dir: Path
    handler: str  # "app.handler"
    arn: str = ""
    module: ModuleType | None = None
    invocations: int = 0


class FunctionHost:
    """Loads and invokes the functions; a handler's exception is returned as Lambda returns it."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.functions: dict[str, LocalFunction] = {}
        self._load_lock = threading.Lock()
        self.errors: list[dict[str, Any]] = []

    def register(self, fn: LocalFunction) -> None:
        self.functions[fn.name] = fn

    def cold_start(self) -> None:
        """Every function loads its code again on its next invocation (a deploy's new environment)."""
        with self._load_lock:
            for fn in self.functions.values():
                fn.module = None

    def by_logical_id(self, logical_id: str) -> LocalFunction:
        return next(f for f in self.functions.values() if f.logical_id == logical_id)

    def _module(self, fn: LocalFunction) -> ModuleType:
        with self._load_lock:
            if fn.module is None:
                module_name, _ = fn.handler.rsplit(".", 1)
                path = fn.code_dir / f"{module_name.replace('.', '/')}.py"
                spec = importlib.util.spec_from_file_location(f"cairn_local_{fn.logical_id}", path)
                assert spec is not None and spec.loader is not None
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                fn.module = module
            return fn.module

    def call(self, name: str, event: dict[str, Any]) -> Any:
        """Invoke and return the handler's result (exceptions propagate): for the HTTP adapter."""
        fn = self.functions[name]
        handler = getattr(self._module(fn), fn.handler.rsplit(".", 1)[1])
        fn.invocations += 1
        return handler(event, LambdaContext(function_name=fn.name, invoked_function_arn=fn.arn))

    def call_safely(self, name: str, event: dict[str, Any]) -> dict[str, Any] | None:
        """Invoke for a stream batch: the handler's response, or None if it raised."""
        body, errored = self.invoke(name, event)
        if errored:
            return None
        result = json.loads(body)
        return result if isinstance(result, dict) else {}

    def invoke(self, name: str, event: dict[str, Any]) -> tuple[str, bool]:
        """Lambda's contract: (payload JSON, errored). Errors come back as {errorType, errorMessage}."""
        try:
            return json.dumps(self.call(name, event), default=str), False
        except Exception as exc:
            error = {
                "errorType": type(exc).__name__,
                "errorMessage": str(exc),
                "stackTrace": traceback.format_exception(exc)[-6:],
            }
            if type(exc).__name__ not in ("ContactConverted", "ContactExited"):
                self.errors.append({"function": name, **error})
            return json.dumps(error), True
