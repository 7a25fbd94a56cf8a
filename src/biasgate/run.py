"""What one run produces: the documents of design §7, and writing them in order.

A :class:`RunRecord` collects the documents as the flow makes them; :func:`publish`
writes whatever exists, data files first, reports next and ``manifest.json`` last, so
that a folder without a manifest is known to be incomplete (:func:`read_manifest`).
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
from biasgate.errors import InputError, SourceError
from biasgate.remote import UncertainWrite, scrub
from biasgate.report import render_report
from biasgate.storage import Writer, join_uri, read_bytes, redact_uri

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
    #: Files a failed publish may have left behind (not confirmed removed), kept
    #: across retries so that the final error lists all of them.
    leftovers: list[str] = field(default_factory=list)

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

    All or nothing for a reader: every file is written whole (temporary file and
    rename, or one PUT), the manifest only after all of them. If a write fails, every
    file this run may have written (in this call or an earlier failed one) is removed,
    best effort, and the error says what was removed and what may remain. The input
    is never touched: the run folder is new for every run.

    Prefect transactions (``with transaction():`` around one task per file, each with
    an ``on_rollback`` hook) are not used: in Prefect 3.9 a failed attempt of a
    retried task inside a transaction rolls the whole transaction back at once, so a
    transient error on the manifest deleted the other files while the retry then
    wrote a manifest for a folder without them; rollback hooks also stop at the first
    hook that raises and report nothing back to the flow. One task that writes in
    order and cleans up after itself keeps the retries and the error message honest.
    """
    options = record.config.storage_options
    files = record.documents()
    writer = Writer(record.run_uri, options)
    manifest_uri = join_uri(record.run_uri, "manifest.json")
    written: list[str] = []
    earlier = bool(record.leftovers)  # a failed attempt before this one wrote files
    try:
        for name, data in files.items():
            uri = join_uri(record.run_uri, name)
            _write(record, writer, uri, data)
            written.append(uri)
        _remove_stale(record, writer, keep=written)
        _write(record, writer, manifest_uri, _json_bytes(record.manifest(files)))
    except Exception as err:
        raise _rolled_back(
            record, writer, err, wrote=bool(written) or earlier
        ) from None
    record.leftovers.clear()
    return [*written, manifest_uri]


def _write(record: RunRecord, writer: Writer, uri: str, data: bytes) -> None:
    """Write one file and remember it for a rollback, also when a failed write may
    have stored it anyway."""
    try:
        writer.write(uri, data)
    except UncertainWrite:
        _remember(record, uri)
        raise
    _remember(record, uri)


def _remember(record: RunRecord, uri: str) -> None:
    if uri not in record.leftovers:
        record.leftovers.append(uri)


def _remove_stale(record: RunRecord, writer: Writer, keep: list[str]) -> None:
    """Files of an earlier failed attempt that this one does not write (the splits,
    when only the error report follows): removed before the manifest is written."""
    stale = [uri for uri in record.leftovers if uri not in keep]
    left = writer.remove(stale[::-1])
    if left:
        logger.warning("files of a failed attempt remain: %s", left)
    record.leftovers[:] = [
        uri for uri in record.leftovers if uri in keep or uri in left
    ]


class PublishFailed(SourceError):
    """Writing a run's files failed; what could not be removed is in the message."""


def _rolled_back(
    record: RunRecord, writer: Writer, err: Exception, *, wrote: bool
) -> PublishFailed:
    """Remove what this run may have written (manifest first) and describe it all.

    When the run had already failed (bad input, an unreachable source, the gate) and
    only its error report could not be written, that first error leads the message.
    """
    cause = str(err) if isinstance(err, SourceError) else f"{type(err).__name__}: {err}"
    left = writer.remove(record.leftovers[::-1])
    record.leftovers[:] = [uri for uri in record.leftovers if uri in left]
    if left:
        cleanup = (
            f"Could not remove what it had written; these {len(left)} file(s) may "
            f"remain: {', '.join(redact_uri(uri) for uri in reversed(left))}"
        )
    elif wrote:
        cleanup = "Removed what it had written"
    else:
        cleanup = "Nothing was written"
    message = (
        f"publishing to {redact_uri(record.run_uri)} failed: {cause}. {cleanup}; "
        "without manifest.json the folder counts as incomplete"
    )
    if record.error is not None and not isinstance(record.error, PublishFailed):
        message = f"{record.error}\nThe error report could not be written: {message}"
    return PublishFailed(
        scrub(message, record.config.storage_options),
        transient=getattr(err, "transient", False),
    )


def read_manifest(run_uri: str, storage_options: dict[str, Any]) -> dict[str, Any]:
    """The manifest of a finished run, after checking every file it lists.

    A folder without ``manifest.json`` is an incomplete run (it failed while
    publishing, or is still being written) and is refused, as is a folder whose files
    do not match the sizes and sha256 sums in its manifest.
    """
    where = redact_uri(run_uri)
    try:
        manifest = json.loads(
            read_bytes(join_uri(run_uri, "manifest.json"), storage_options)
        )
    except SourceError as err:
        if "does not exist" not in str(err):
            raise
        raise InputError(
            f"run {where} has no manifest.json: it is incomplete"
        ) from None
    for name, meta in manifest["files"].items():
        data = read_bytes(join_uri(run_uri, name), storage_options)
        if {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()} != meta:
            raise InputError(f"run {where}: {name} does not match its manifest entry")
    return manifest
