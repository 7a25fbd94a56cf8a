"""Reading the source and writing outputs, for local paths and any fsspec URI.

Every remote access goes through fsspec (:mod:`biasgate.remote`) with the config's
``storage_options``; pandas and pyarrow only ever see bytes in memory. Handing them an
``s3://`` URI instead would let pandas, given ``storage_options=None``, switch to
pyarrow's own S3 client, which ignores the endpoint and keys configured for s3fs.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from biasgate.errors import ConfigError, InputError, SourceError
from biasgate.remote import redact_uri

logger = logging.getLogger("biasgate.storage")

_FORMATS = {
    ".csv": "csv",
    ".txt": "csv",
    ".tsv": "csv",
    ".data": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
_COMPRESSIONS = {
    ".gz": "gzip",
    ".bz2": "bz2",
    ".zst": "zstd",
    ".xz": "xz",
    ".zip": "zip",
}


def is_remote(uri: str) -> bool:
    """True for ``scheme://`` URIs other than ``file://``."""
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", uri)
    return bool(match) and match.group(1).lower() != "file"


def join_uri(base: str, *parts: str) -> str:
    """Join path parts onto a local path or a URI with forward slashes."""
    if is_remote(base):
        return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])
    return str(Path(base).joinpath(*parts))


def detect_format(uri: str, read_options: dict[str, Any]) -> tuple[str, str | None]:
    """(format, compression) from ``read.format`` or the file name's suffixes."""
    suffixes = [s.lower() for s in Path(uri.split("?")[0]).suffixes]
    compression = _COMPRESSIONS.get(suffixes[-1]) if suffixes else None
    if compression:
        suffixes = suffixes[:-1]
    fmt = read_options.get("format") or (
        _FORMATS.get(suffixes[-1]) if suffixes else None
    )
    if fmt not in ("csv", "parquet", "jsonl"):
        raise ConfigError(
            f"cannot tell the format of {redact_uri(uri)!r} from its name; set "
            "read.format to csv, parquet or jsonl"
        )
    return fmt, compression


@dataclass
class SourceInfo:
    """What the manifest records about the input."""

    uri: str
    bytes: int
    sha256: str
    rows: int
    columns: int
    format: str
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "uri": redact_uri(self.uri)}


def read_bytes(uri: str, storage_options: dict[str, Any]) -> bytes:
    """The whole object at ``uri``; OS and service errors become SourceError."""
    if not is_remote(uri):
        path = Path(uri.removeprefix("file://")).absolute()
        try:
            return path.read_bytes()
        except FileNotFoundError as err:
            raise SourceError(f"source {path} does not exist") from err
        except IsADirectoryError as err:
            raise SourceError(f"source {path} is a directory; give a file") from err
        except PermissionError as err:
            raise SourceError(
                f"source {path} cannot be read: permission denied"
            ) from err
    from biasgate.remote import ObjectStore

    return ObjectStore(uri, storage_options).read(uri)


def parse_table(data: bytes, uri: str, read_options: dict[str, Any]) -> pd.DataFrame:
    """Parse bytes as CSV, Parquet or JSON lines with the config's ``read`` options."""
    fmt, compression = detect_format(uri, read_options)
    options = {k: v for k, v in read_options.items() if k != "format"}
    name = redact_uri(uri)
    if not data:
        raise InputError(f"source {name} is empty (0 bytes); nothing to check")
    buffer = io.BytesIO(data)
    try:
        if fmt == "csv":
            options.setdefault("compression", compression)
            return pd.read_csv(buffer, **options)
        if fmt == "parquet":
            return pd.read_parquet(buffer, **options)
        options.setdefault("compression", compression)
        return pd.read_json(buffer, lines=True, **options)
    except pd.errors.EmptyDataError as err:
        raise InputError(f"source {name} holds no data (no header, no rows)") from err
    except TypeError as err:
        given = sorted(k for k in read_options if k != "format")
        raise ConfigError(f"read options {given} rejected: {err}") from err
    except (pd.errors.ParserError, ValueError, OSError, EOFError, zlib.error) as err:
        # OSError covers gzip.BadGzipFile; zlib.error and EOFError a truncated or
        # corrupt compressed stream. None of them gets better on a retry.
        raise InputError(
            f"source {name} cannot be parsed as {fmt}"
            f"{f' ({compression}-compressed)' if compression else ''}: "
            f"{type(err).__name__}: {err}. Check that the file is whole, and the read "
            "options (sep, header, names) or read.format"
        ) from err


def _refuse_header_as_data(frame: pd.DataFrame, uri: str, options: dict) -> None:
    """With ``names`` and no header row, a first row equal to the names is a header."""
    names = options.get("names")
    header = options.get("header", "infer")
    if not names or header not in (None, "infer") or frame.empty:
        return
    first = [str(v).strip() for v in frame.iloc[0].tolist()]
    if first == [str(n).strip() for n in names]:
        raise InputError(
            f"the first row of {redact_uri(uri)} repeats the column names: the file "
            "has a header row but is read as data. Set read.header: 0 to use the "
            "given names instead of it, or drop read.names"
        )


def read_table(
    uri: str, read_options: dict[str, Any], storage_options: dict[str, Any]
) -> tuple[pd.DataFrame, SourceInfo]:
    """Read the source once: its bytes (hashed for the manifest), then the table."""
    started = time.perf_counter()
    if is_remote(uri):  # fail on an unknown format before downloading the object
        detect_format(uri, read_options)
    data = read_bytes(uri, storage_options)
    frame = parse_table(data, uri, read_options)
    _refuse_header_as_data(frame, uri, read_options)
    if frame.empty:
        raise InputError(
            f"source {redact_uri(uri)} has a header but no data rows; nothing to check"
        )
    info = SourceInfo(
        uri=uri,
        bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        rows=len(frame),
        columns=frame.shape[1],
        format=detect_format(uri, read_options)[0],
        seconds=round(time.perf_counter() - started, 3),
    )
    return frame, info


class Writer:
    """Writes and removes the files of one output location, local or remote.

    Readers see each file whole or not at all: locally the bytes go to a temporary
    file in the same folder, are flushed to disk and renamed over the target; an object
    store's PUT is atomic per object. A remote location is reached through one
    filesystem for all the files of a run.
    """

    def __init__(self, location: str, storage_options: dict[str, Any]) -> None:
        self._store = None
        if is_remote(location):
            from biasgate.remote import ObjectStore

            self._store = ObjectStore(location, storage_options)

    def write(self, uri: str, data: bytes) -> None:
        if self._store is not None:
            self._store.write(uri, data)
        else:
            _write_local_atomic(Path(uri.removeprefix("file://")), data)

    def remove(self, uris: list[str]) -> list[str]:
        """Best-effort delete (a rolled-back publish); returns what may remain."""
        if self._store is not None:
            return self._store.remove(uris)
        left = []
        for uri in uris:
            try:
                Path(uri.removeprefix("file://")).unlink(missing_ok=True)
            except OSError as err:
                logger.warning("could not remove %s: %s", uri, type(err).__name__)
                left.append(uri)
        return left


def _write_local_atomic(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
        )
    except OSError as err:
        raise SourceError(f"cannot write {path}: {err.strerror or err}") from err
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs are shared
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Read once at import, before any worker thread exists: os.umask() sets as it reads.
_UMASK = _read_umask()
