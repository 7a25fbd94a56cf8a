"""Wall time of the main job on Adult, and how much of it is Prefect's own start-up.

Runs, each in a fresh process as a user would:

1. ``biasgate run examples/adult.yaml`` (embedded Prefect: a temporary server starts),
2. an empty Prefect flow (the same start-up and bookkeeping, no work),
3. ``biasgate check`` on the same data (no Prefect, no Great Expectations),

and reads the per-step timings the run recorded in its manifest.

Usage: ``.venv/bin/python benchmarks/main_job.py [--repeat 3]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ADULT_READ = [
    "--read", "header=null", "--read", "skipinitialspace=true",
    "--read", "names=[age, workclass, fnlwgt, education, education-num, marital-status,"
    " occupation, relationship, race, sex, capital-gain, capital-loss, hours-per-week,"
    " native-country, income]",
]  # fmt: skip
EMPTY_FLOW = "from prefect import flow\nflow(name='empty')(lambda: None)()\n"


def _timed(cmd: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="biasgate-bench-"))
    env = {
        **os.environ, "PREFECT_HOME": str(work / "prefect"), "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }  # fmt: skip
    env.pop("PREFECT_API_URL", None)
    biasgate = [sys.executable, "-m", "biasgate"]
    runs, empty, check = [], [], []
    for i in range(args.repeat):
        out = work / f"runs{i}"
        runs.append(
            _timed([*biasgate, "run", "examples/adult.yaml", "--output", str(out)], env)
        )
        empty.append(_timed([sys.executable, "-c", EMPTY_FLOW], env))
        check.append(
            _timed(
                [*biasgate, "check", "data/adult.csv.gz", "--label", "income",
                 "--positive", ">50K", "--facet", "sex=Female", "--facet", "race",
                 "--group", "education", *ADULT_READ],
                env,
            )
        )  # fmt: skip
    manifest = json.loads(next(work.glob("runs0/adult/*/manifest.json")).read_text())
    steps = manifest["timings_seconds"]
    median = statistics.median
    print(f"repeats: {args.repeat}; cores: {os.cpu_count()}")
    print(f"biasgate run examples/adult.yaml  median {median(runs):6.1f} s  {runs}")
    print(f"empty Prefect flow (start-up)     median {median(empty):6.1f} s  {empty}")
    print(f"biasgate check (no Prefect)       median {median(check):6.1f} s  {check}")
    print(
        f"steps inside the flow (first run): {steps}, sum {sum(steps.values()):.1f} s"
    )
    share = median(empty) / median(runs)
    print(f"Prefect start-up and bookkeeping: {share:.0%} of the run's wall time")


if __name__ == "__main__":
    main()
