"""What one run produces: the documents of design §7, and writing them in order.

A :class:`RunRecord` collects the documents as the flow makes them; :func:`publish`
writes whatever exists, data files first, reports next and ``manifest.json`` last, so
that a folder without a manifest is known to be incomplete.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import platform
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

import pandas as pd

from biasgate.config import Config
from biasgate.errors import SourceError
from biasgate.report import render_report
from biasgate.storage import join_uri, redact_uri, remove_quietly, write_bytes_atomic

logger = logging.getLogger("biasgate.run")

_PACKAGES = (
    "biasgate", "prefect", "great-expectations", "pandas", "numpy", "pyarrow",
    "scikit-learn", "imbalanced-learn", "s3fs", "fsspec", "pydantic",
)  # fmt: skip


def new_run_id(suffix: str | None = None) -> str:
    """A sortable, unique folder name: UTC time and a short random or given suffix."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{(suffix or uuid.uuid4().hex)[:8]}"


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


def _json_bytes(document: Any) -> bytes:
    return (json.dumps(document, indent=2, allow_nan=False) + "\n").encode()


def _parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


@dataclass
class RunRecord:
    """Everything a run has measured so far, ready to be published at any point."""

    config: Config
    run_uri: str
    run_id: str
    started: float = field(default_factory=time.time)
    source: dict[str, Any] | None = None
    validation: dict[str, Any] | None = None
    raw: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    gate: dict[str, Any] | None = None
    rebalance: dict[str, Any] | None = None
    splits: dict[str, pd.DataFrame] | None = None
    error: Exception | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def timed(self, step: str) -> Iterator[None]:
        """Record how long a step of the flow took, in seconds."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.timings[step] = round(time.perf_counter() - started, 3)

    @property
    def status(self) -> str:
        if self.error is not None and getattr(self.error, "exit_code", 2) == 2:
            return "error"
        if self.gate is None:
            return "incomplete"
        return self.gate["verdict"]

    def analysis(self) -> dict[str, Any]:
        """analysis.json: Clarify's shape, plus the rebalanced training split."""
        document: dict[str, Any] = {"version": "1.0"}
        if self.raw is not None:
            document["pre_training_bias_metrics"] = self.raw
        if self.after is not None:
            document["rebalanced_training_bias_metrics"] = self.after
        return document

    def report(self) -> str:
        return render_report(self)

    def documents(self) -> dict[str, bytes]:
        """Every file this run can write now, in the order they are written."""
        files: dict[str, bytes] = {}
        if self.splits is not None and self.status in ("passed", "warned"):
            for name in ("train", "validation", "test"):
                files[f"{name}.parquet"] = _parquet_bytes(self.splits[name])
        if self.validation is not None:
            files["validation.json"] = _json_bytes(self.validation)
        if self.raw is not None:
            files["analysis.json"] = _json_bytes(self.analysis())
        if self.gate is not None:
            files["gate.json"] = _json_bytes(self.gate)
        if self.status == "error":
            files["error.json"] = _json_bytes(
                {"error": type(self.error).__name__, "message": str(self.error)}
            )
        files["report.md"] = self.report().encode()
        return files

    def manifest(self, files: dict[str, bytes]) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "started": datetime.fromtimestamp(self.started, UTC).isoformat(),
            "finished": datetime.now(UTC).isoformat(),
            "input": self.source,
            "output": redact_uri(self.run_uri),
            "files": {
                name: {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                for name, data in files.items()
            },
            "rows": {n: len(f) for n, f in (self.splits or {}).items()},
            "config": self.config.redacted(),
            "versions": package_versions(),
            "timings_seconds": self.timings,
        }


def publish(record: RunRecord) -> list[str]:
    """Write the run's files, ``manifest.json`` last; returns the URIs written.

    If a write fails, what this call wrote is removed (best effort) and the error
    names what could not be removed, so no folder is left looking complete.
    """
    options = record.config.storage_options
    files = record.documents()
    written: list[str] = []
    try:
        for name, data in files.items():
            uri = join_uri(record.run_uri, name)
            write_bytes_atomic(uri, data, options)
            written.append(uri)
        manifest_uri = join_uri(record.run_uri, "manifest.json")
        write_bytes_atomic(manifest_uri, _json_bytes(record.manifest(files)), options)
        written.append(manifest_uri)
    except Exception as err:
        left = [uri for uri in written if not remove_quietly(uri, options)]
        detail = f"; could not remove {left}" if left else "; removed what was written"
        raise SourceError(
            f"publishing to {redact_uri(record.run_uri)} failed "
            f"({type(err).__name__}: {err}){detail}",
            transient=False,
        ) from err
    return written
