"""The trigger function's cold start loads only what intake needs: the workflow language, its compiler and
the rule language (about a fifth of the cold import) load with the first request that uses them, never
for a `track`. Checked in a fresh interpreter, as Lambda starts one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = (
    "cairn.domain.rules",
    "cairn.domain.workflows",
    "cairn.domain.compiler",
    "cairn.services.workflows",
    "cairn.services.stats",
)

# A fresh process: load functions/trigger/app.py as Lambda does, answer one `track` with every AWS call
# stubbed to an empty success, and report which of HEAVY were imported after each.
SCRIPT = """
import json, sys
from typing import Any
import botocore.session
from botocore.awsrequest import AWSResponse
from bench.calls import Context, http_event, load_handler, unthrottled

HEAVY = %r

def loaded() -> list[str]:
    return [name for name in HEAVY if name in sys.modules]

class Raw:
    def stream(self, **_: Any) -> Any:
        yield b"{}"

def stub(request: Any, **_: Any) -> AWSResponse:
    return AWSResponse(request.url, 200, {"content-type": "application/x-amz-json-1.0"}, Raw())

original = botocore.session.Session.create_client

def create_client(session: Any, *args: Any, **kwargs: Any) -> Any:
    client = original(session, *args, **kwargs)
    client.meta.events.register("before-send.*.*", stub)
    return client

botocore.session.Session.create_client = create_client
trigger = load_handler("trigger")
after_import = loaded()
from cairn.domain.keys import ApiKey, KeyKind
trigger.app.gate.lookup = lambda raw: ApiKey("h" * 64, KeyKind.WRITE, "test")
unthrottled(trigger)
body = {"userId": "user-1", "event": "page_viewed", "messageId": "cold-1"}
response = trigger.handler(http_event("/v1/track", body, "cw_cold-import-test"), Context())
print(json.dumps({"import": after_import, "track": loaded(), "status": response["statusCode"]}))
"""


def test_the_trigger_cold_start_and_a_track_do_not_load_the_workflow_or_rule_language() -> None:
    from bench.calls import ENV

    env = {
        **os.environ,
        **ENV,
        "CAIRN_SITE_PATH": str(ROOT / "statemachines" / "site" / "site.json"),
        "PYTHONPATH": str(ROOT),
    }
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT % (HEAVY,)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["status"] == 202, out.stderr
    assert result["import"] == []
    assert result["track"] == []
