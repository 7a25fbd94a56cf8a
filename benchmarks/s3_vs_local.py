"""The Adult run against S3 and against local files, on one machine.

A local S3-compatible server (moto, in this process, on 127.0.0.1) holds the source;
three measurements compare it with the same file on disk:

1. ``biasgate run`` end to end, each in a fresh process as a user runs it (embedded
   Prefect: a temporary server starts every time), with the run's own step timings;
2. reading the source, as the ingest task does (bytes, sha256, parse);
3. writing the files of a run, as publish does (splits, reports, manifest last).

Only dummy credentials are used, and every client gets the loopback endpoint
explicitly; nothing can reach AWS. Needs moto[server] (the ``test`` extra).

Usage: ``.venv/bin/python benchmarks/s3_vs_local.py [--repeat 3]``
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
from collections.abc import Callable
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "biasgate-bench"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "bench-key-id", "AWS_SECRET_ACCESS_KEY": "bench-secret",
    "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}  # fmt: skip


def start_moto() -> tuple[object, str]:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    return server, "http://{}:{}".format(*server.get_host_and_port())


def write_config(path: Path, source: str, output: str, options: dict) -> Path:
    config = yaml.safe_load((ROOT / "examples" / "adult.yaml").read_text())
    config |= {
        "source": source, "output": output, "storage_options": options,
        "expectations": str(ROOT / "expectations" / "adult.json"),
    }  # fmt: skip
    path.write_text(yaml.safe_dump(config))
    return path


def timed(action: Callable[..., object], *args: object) -> float:
    started = time.perf_counter()
    action(*args)
    return time.perf_counter() - started


def write_run_files(target: str, files: dict[str, bytes], options: dict) -> None:
    """What publish does: one writer, every file whole, manifest.json last."""
    from biasgate.storage import Writer

    writer = Writer(target, options)
    for name in sorted(files, key=lambda name: name == "manifest.json"):
        writer.write(f"{target}/{name}", files[name])


def run_in_fresh_process(config: Path, env: dict[str, str]) -> float:
    command = [sys.executable, "-m", "biasgate", "run", str(config)]
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, cwd=ROOT, capture_output=True)
    return time.perf_counter() - started


def manifest_steps(location: str, options: dict) -> dict[str, float]:
    from biasgate.storage import read_bytes

    if location.startswith("s3://"):
        import s3fs

        fs = s3fs.S3FileSystem(**options, skip_instance_cache=True)
        paths = sorted(
            fs.glob(f"{location.removeprefix('s3://')}/adult/*/manifest.json")
        )
        uri = f"s3://{paths[0]}"
    else:
        uri = str(sorted(Path(location).glob("adult/*/manifest.json"))[0])
    manifest = json.loads(read_bytes(uri, options))
    return {**manifest["timings_seconds"], "read (manifest input.seconds)":
            manifest["input"]["seconds"]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    os.environ.update(AWS_ENV)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        os.environ.pop(name, None)
    from biasgate.storage import read_table

    server, endpoint = start_moto()
    options = {"endpoint_url": endpoint}
    work = Path(tempfile.mkdtemp(prefix="biasgate-s3-bench-"))
    env = {
        **os.environ, "PREFECT_HOME": str(work / "prefect"), "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "AWS_ENDPOINT_URL": endpoint,
    }  # fmt: skip
    env.pop("PREFECT_API_URL", None)
    try:
        import s3fs

        fs = s3fs.S3FileSystem(endpoint_url=endpoint, skip_instance_cache=True)
        fs.mkdir(BUCKET)
        local_source = ROOT / "data" / "adult.csv.gz"
        s3_source = f"s3://{BUCKET}/raw/adult.csv.gz"
        fs.pipe_file(s3_source, local_source.read_bytes())
        locations = {"local": str(work / "runs"), "s3": f"s3://{BUCKET}/runs"}
        sources = {"local": str(local_source), "s3": s3_source}
        configs = {
            kind: write_config(work / f"{kind}.yaml", sources[kind], locations[kind],
                               options if kind == "s3" else {})
            for kind in ("local", "s3")
        }  # fmt: skip

        wall: dict[str, list[float]] = {"local": [], "s3": []}
        for _ in range(args.repeat):  # alternate, so that drift hits both alike
            for kind in ("local", "s3"):
                wall[kind].append(run_in_fresh_process(configs[kind], env))
        steps = {
            kind: manifest_steps(locations[kind], options if kind == "s3" else {})
            for kind in ("local", "s3")
        }

        read = {"local": [], "s3": []}
        read_options = yaml.safe_load(configs["local"].read_text())["read"]
        for _ in range(args.repeat * 3):
            for kind in ("local", "s3"):
                kind_options = options if kind == "s3" else {}
                read[kind].append(
                    timed(read_table, sources[kind], read_options, kind_options)
                )

        folder = sorted((work / "runs" / "adult").iterdir())[0]
        files = {p.name: p.read_bytes() for p in folder.iterdir()}
        write = {"local": [], "s3": []}
        for i in range(args.repeat * 3):
            for kind in ("local", "s3"):
                target = f"{locations[kind]}/bench/{i}"
                kind_options = options if kind == "s3" else {}
                write[kind].append(timed(write_run_files, target, files, kind_options))
    finally:
        server.stop()

    median = statistics.median
    size = sum(len(d) for d in files.values())
    source_size = local_source.stat().st_size
    print(f"repeats: {args.repeat} runs, {args.repeat * 3} reads/writes; "
          f"cores: {os.cpu_count()}; S3 = moto {endpoint} (loopback)")  # fmt: skip
    print(f"{'':44}{'local':>10}{'s3':>10}{'s3 - local':>12}")
    rows = [
        ("biasgate run, fresh process (s, median)", wall),
        (f"read source {source_size / 1e6:.1f} MB + parse (s, median)", read),
        (f"write {len(files)} run files {size / 1e6:.1f} MB (s, median)", write),
    ]
    for label, values in rows:
        local, s3 = median(values["local"]), median(values["s3"])
        print(f"{label:44}{local:10.3f}{s3:10.3f}{s3 - local:+12.3f}")
    print("steps inside the flow, from each run's manifest (s):")
    for step in steps["local"]:
        local, s3 = steps["local"][step], steps["s3"].get(step, float("nan"))
        print(f"  {step:42}{local:10.3f}{s3:10.3f}{s3 - local:+12.3f}")
    print(f"all run wall times: local {wall['local']}, s3 {wall['s3']}")


if __name__ == "__main__":
    main()
