"""The crash test's worker process: the processors and the timers over a data directory, on the real clock.

    python -m tests.integration.scenario_worker DATA_DIR SCENARIO_ID EXPECTED

Prints `ready` once built, then drains the runtime and fires due timers until EXPECTED instances of
the scenario have completed. The test kills it with SIGKILL at random points and starts it again.
"""

from __future__ import annotations

import sys
import time
from datetime import date
from pathlib import Path

from herald.api.wiring import build
from herald.infra.config import Settings


def main(data_dir: str, scenario_id: str, expected: int) -> int:
    herald = build(Settings(data_dir=Path(data_dir), admin_token="t", reports_engine="off"))
    print("ready", flush=True)
    try:
        while True:
            herald.tick()
            herald.runtime.drain()
            done = herald.scenarios.statistics(scenario_id, date.min, date.max)["completed"]
            if done >= expected:
                return 0
            time.sleep(0.05)
    finally:
        herald.close()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
