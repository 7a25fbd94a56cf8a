"""Object-store access through fsspec (s3fs for ``s3://``)."""

from __future__ import annotations

from typing import Any

from biasgate.errors import SourceError


def _filesystem(uri: str, storage_options: dict[str, Any]):
    import fsspec

    return fsspec.core.url_to_fs(uri, **storage_options)


def read_remote_bytes(uri: str, storage_options: dict[str, Any]) -> bytes:
    """The whole object at ``uri``."""
    fs, path = _filesystem(uri, storage_options)
    try:
        with fs.open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError as err:
        raise SourceError(f"source {uri} does not exist") from err


def write_remote_bytes(uri: str, data: bytes, storage_options: dict[str, Any]) -> None:
    """Put ``data`` as one object."""
    fs, path = _filesystem(uri, storage_options)
    fs.pipe_file(path, data)
