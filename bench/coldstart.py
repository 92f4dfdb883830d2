"""The trigger function's cold import time as a ratio to `import boto3` alone, both in fresh processes."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

from bench.calls import ENV

ROOT = Path(__file__).resolve().parents[1]

BOTO3 = "import time; t = time.perf_counter(); import boto3; print(time.perf_counter() - t)"
TRIGGER = (
    "import time, importlib.util; t = time.perf_counter(); "
    "spec = importlib.util.spec_from_file_location('app', 'functions/trigger/app.py'); "
    "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); print(time.perf_counter() - t)"
)


def _time(code: str) -> float:
    env = {**os.environ, **ENV, "CAIRN_SITE_PATH": str(ROOT / "statemachines" / "site" / "site.json")}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def cold_import(rounds: int = 7) -> dict[str, float]:
    boto3_times, trigger_times = [], []
    for _ in range(rounds):  # interleaved, so both see the same machine state
        boto3_times.append(_time(BOTO3))
        trigger_times.append(_time(TRIGGER))
    b, t = statistics.median(boto3_times), statistics.median(trigger_times)
    return {"boto3_s": b, "trigger_s": t, "ratio": t / b, "rounds": rounds}
