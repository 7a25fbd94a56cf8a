"""Object-store access through fsspec (s3fs for ``s3://``), with errors one can act on.

Every service or network failure becomes a :class:`SourceError` that names the bucket,
the key and what to do; ``transient`` is True only for failures worth retrying (an
unreachable endpoint, a timeout, throttling). Retrying is left to the Prefect tasks,
with the back-off of ``io`` in the config, so botocore is told not to retry on its own.

Messages never carry credentials: the service's own text is scrubbed of every secret
known from ``storage_options`` and the environment, and of anything shaped like an AWS
access key id, and the original exception is not chained (its response may hold the
key id).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

from biasgate.errors import ConfigError, SourceError

#: s3fs defaults merged under the user's ``storage_options``. A fresh filesystem per
#: operation group (skip_instance_cache) so that a long-running worker never reuses a
#: client holding expired credentials; short connect / read timeouts and no botocore
#: retries, so that an unreachable endpoint fails in seconds and the task's own
#: retries (``io.retries``, ``io.retry_delay_seconds``) decide how often to try again.
S3_DEFAULTS: dict[str, Any] = {
    "skip_instance_cache": True,
    "config_kwargs": {
        "connect_timeout": 5,
        "read_timeout": 15,
        "retries": {"mode": "standard", "max_attempts": 1},
    },
}

#: Tries of one S3 call inside s3fs (read timeouts, dropped connections, SlowDown);
#: s3fs's own default of 5 times a 15 s read timeout made a server that accepts
#: connections and never answers cost minutes per task attempt.
S3_CALL_TRIES = 2

_S3_PROTOCOLS = ("s3", "s3a")
_SECRET_NAME = re.compile(r"key|secret|token|password|passwd|username|credential", re.I)
_SECRET_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
               "AWS_SECURITY_TOKEN")  # fmt: skip
_ACCESS_KEY_ID = re.compile(
    r"\b(?:AKIA|ASIA|AIDA|AROA|AGPA|ANPA|ANVA|AIPA)[A-Z0-9]{12,}\b"
)
_TRANSIENT_CODES = {
    "SlowDown", "Throttling", "ThrottlingException", "RequestTimeout",
    "ServiceUnavailable", "InternalError", "500", "502", "503", "504",
}  # fmt: skip
_DENIED_CODES = {"AccessDenied", "AllAccessDisabled", "AccountProblem", "403",
                 "Forbidden"}  # fmt: skip
#: Shorter values are left alone: scrubbing a dummy key such as "test" would mangle
#: every "test.parquet" in a message. Real secrets are longer (AWS 40, MinIO >= 8).
_MIN_SECRET_LENGTH = 8


class UncertainWrite(SourceError):
    """A write failed after its request may have reached the server (a read timeout,
    a dropped connection): the object may or may not have been stored."""


def protocol(uri: str) -> str:
    return uri.split("://", 1)[0].lower() if "://" in uri else "file"


def redact_uri(uri: str) -> str:
    """Drop any ``user:password@`` part of a URI before it is logged or written."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/@]*@", r"\1***@", uri)


def split_bucket_key(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/key`` -> ("bucket", "some/key")."""
    path = uri.split("://", 1)[-1]
    bucket, _, key = path.partition("/")
    return bucket, key


def _secret_values(options: Any) -> Iterable[str]:
    if isinstance(options, dict):
        for name, value in options.items():
            if isinstance(value, str) and _SECRET_NAME.search(str(name)):
                yield value
            else:
                yield from _secret_values(value)
    elif isinstance(options, list | tuple):
        for value in options:
            yield from _secret_values(value)


def scrub(text: str, storage_options: dict[str, Any] | None = None) -> str:
    """``text`` with every known credential and AWS-shaped key id replaced by ***."""
    secrets = {*_secret_values(storage_options or {})}
    secrets |= {os.environ[name] for name in _SECRET_ENV if os.environ.get(name)}
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= _MIN_SECRET_LENGTH:
            text = text.replace(secret, "***")
    return _ACCESS_KEY_ID.sub("***", text)


def filesystem(uri: str, storage_options: dict[str, Any]) -> tuple[Any, str]:
    """A new fsspec filesystem for ``uri`` (S3 defaults merged in), and the path."""
    import fsspec

    options = dict(storage_options)
    if protocol(uri) in _S3_PROTOCOLS:
        config = {**S3_DEFAULTS["config_kwargs"], **options.get("config_kwargs", {})}
        options = {**S3_DEFAULTS, **options, "config_kwargs": config}
    try:
        return fsspec.core.url_to_fs(uri, **options)
    except ImportError as err:
        raise ConfigError(
            f"cannot open {redact_uri(uri)}: no filesystem for '{protocol(uri)}://' is "
            f"installed ({scrub(str(err), storage_options)})"
        ) from None
    except (TypeError, ValueError) as err:
        raise ConfigError(
            f"cannot open {redact_uri(uri)}: {scrub(str(err), storage_options)}; check "
            "the URI and storage_options"
        ) from None


class ObjectStore:
    """Reads, writes and removes objects through one filesystem (one connection pool).

    Make one per group of operations (the read of a source, the publishing of a run):
    creating an S3 client costs ~0.1 s, and a fresh one picks up current credentials.
    """

    def __init__(self, uri: str, storage_options: dict[str, Any]) -> None:
        self.options = storage_options
        self.fs, _ = filesystem(uri, storage_options)
        if protocol(uri) in _S3_PROTOCOLS:
            self.fs.retries = S3_CALL_TRIES
            try:  # creates the client (no request yet): bad options fail here
                _send_bodies_at_once(self.fs)
            except (TypeError, ValueError) as err:
                raise ConfigError(
                    f"cannot open {redact_uri(uri)}: storage_options rejected: "
                    f"{scrub(str(err), storage_options)}"
                ) from None
            except Exception as err:  # noqa: BLE001
                raise self.error(err, uri, "open") from None

    def _path(self, uri: str) -> str:
        return self.fs._strip_protocol(uri)

    def read(self, uri: str) -> bytes:
        """The whole object at ``uri``."""
        try:
            return self.fs.cat_file(self._path(uri))
        except Exception as err:  # noqa: BLE001 - every failure is described below
            if _code(err) in (None, "403", "Forbidden") and isinstance(
                err, PermissionError
            ):
                err = self._why_forbidden(uri, err)
            raise self.error(err, uri, "read") from None

    def write(self, uri: str, data: bytes) -> None:
        """Put ``data`` as one object (an S3 PUT is atomic: whole or absent)."""
        try:
            self.fs.pipe_file(self._path(uri), data)
        except Exception as err:  # noqa: BLE001
            error = self.error(err, uri, "write")
            if not _surely_not_stored(err):
                error = UncertainWrite(str(error), transient=error.transient)
            raise error from None

    def remove(self, uris: list[str]) -> list[str]:
        """Delete ``uris`` (best effort, missing ones count as removed); returns the
        URIs that may still exist."""
        if not uris:
            return []
        if protocol(uris[0]) not in _S3_PROTOCOLS:
            return [uri for uri in uris if not self._remove_one(uri)]
        left: list[str] = []
        by_bucket: dict[str, list[str]] = {}
        for uri in uris:
            by_bucket.setdefault(split_bucket_key(uri)[0], []).append(uri)
        for bucket, group in by_bucket.items():
            keys = {split_bucket_key(uri)[1]: uri for uri in group}
            try:
                out = self.fs.call_s3(
                    "delete_objects",
                    Bucket=bucket,
                    Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True},
                )
            except Exception as err:  # noqa: BLE001 - the caller reports "may remain"
                if _code(err) != "NoSuchBucket":  # no bucket: nothing to remove
                    left += group
                continue
            left += [
                keys[e["Key"]] for e in out.get("Errors", []) if e.get("Key") in keys
            ]
        self.fs.invalidate_cache()
        return left

    def _remove_one(self, uri: str) -> bool:
        try:
            if self.fs.exists(self._path(uri)):
                self.fs.rm_file(self._path(uri))
            return True
        except Exception:  # noqa: BLE001
            return False

    def _why_forbidden(self, uri: str, err: Exception) -> Exception:
        """A HEAD request answers 403 without a reason; a one-byte GET gives the code
        (AccessDenied, InvalidAccessKeyId, SignatureDoesNotMatch, ...)."""
        if protocol(uri) not in _S3_PROTOCOLS:
            return err
        bucket, key = split_bucket_key(uri)
        try:
            self.fs.call_s3("get_object", Bucket=bucket, Key=key, Range="bytes=0-0")
        except Exception as probe:  # noqa: BLE001
            return probe if _code(probe) else err
        return err

    def endpoint(self) -> str:
        """The endpoint the client talks to, for messages (without any user info)."""
        url = getattr(self.fs, "endpoint_url", None)
        client = getattr(self.fs, "_s3", None)
        url = url or getattr(getattr(client, "meta", None), "endpoint_url", None)
        url = (
            url
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
        )
        return redact_uri(url) if url else "the default AWS endpoint"

    def error(self, err: BaseException, uri: str, verb: str) -> SourceError:
        """Describe ``err``: what failed, on which bucket and key, and what to do."""
        reason, transient = describe(err, uri, self.endpoint(), self.options)
        return SourceError(
            f"cannot {verb} {redact_uri(uri)}: {reason}", transient=transient
        )


def _send_bodies_at_once(fs: Any) -> None:
    """Stop botocore from asking each PUT to wait for "100 Continue" first.

    aiohttp waits for that answer without any timeout (its read timeout starts once the
    body is sent), so a server that accepts the connection and never answers would
    hang a write forever. Sent at once, the body is followed by the read timeout.
    """
    from botocore.handlers import add_expect_header

    fs.s3.meta.events.unregister("before-call.s3", add_expect_header)


def _chain(err: BaseException | None) -> Iterable[BaseException]:
    seen = 0
    while err is not None and seen < 10:
        yield err
        err, seen = err.__cause__ or err.__context__, seen + 1


def _code(err: BaseException) -> str | None:
    """The service's error code (NoSuchBucket, AccessDenied, ...) in the chain."""
    for link in _chain(err):
        response = getattr(link, "response", None)
        if isinstance(response, dict):
            code = (response.get("Error") or {}).get("Code")
            if code:
                return str(code)
    return None


def _surely_not_stored(err: BaseException) -> bool:
    """True when a failed PUT cannot have stored anything: the service refused it, or
    the connection was never made."""
    import botocore.exceptions as boto

    never_sent = (
        boto.EndpointConnectionError, boto.ConnectTimeoutError, boto.NoCredentialsError,
        boto.PartialCredentialsError, boto.ParamValidationError, FileNotFoundError,
        PermissionError,
    )  # fmt: skip
    return _code(err) is not None or isinstance(err, never_sent)


def _network_failure(err: BaseException) -> str | None:
    """How the connection failed ("is unreachable", ...), or None if it did not."""
    import botocore.exceptions as boto
    from fsspec.exceptions import FSTimeoutError

    if isinstance(err, boto.ReadTimeoutError | TimeoutError | FSTimeoutError):
        return "did not answer within the read timeout"
    if isinstance(err, boto.ConnectTimeoutError | boto.EndpointConnectionError):
        return "is unreachable"
    if isinstance(err, boto.HTTPClientError):
        return "dropped the connection"
    if isinstance(err, boto.ConnectionError | ConnectionError):
        return "is unreachable"
    return None


def describe(
    err: BaseException, uri: str, endpoint: str, storage_options: dict[str, Any]
) -> tuple[str, bool]:
    """(reason with a suggested fix, transient) for a failed object-store call."""
    import botocore.exceptions as boto

    bucket, key = split_bucket_key(uri)
    code = _code(err)
    where = f"bucket '{bucket}', key '{key}'"
    set_endpoint = "AWS_ENDPOINT_URL or storage_options.endpoint_url"
    if code == "NoSuchBucket" or (
        isinstance(err, FileNotFoundError) and "bucket" in str(err).lower()
    ):
        return (
            f"bucket '{bucket}' does not exist at {endpoint}; create it (e.g. "
            f"`aws s3 mb s3://{bucket}`) or fix the bucket name, or {set_endpoint} if "
            "the bucket lives on another server"
        ), False
    if code in ("NoSuchKey", "404") or isinstance(err, FileNotFoundError):
        return (
            f"key '{key}' does not exist in bucket '{bucket}' at {endpoint}; check the "
            f"key (e.g. `aws s3 ls s3://{bucket}/{key.rpartition('/')[0]}`)"
        ), False
    if code == "InvalidAccessKeyId":
        return (
            f"the server at {endpoint} does not know the access key id "
            f"(InvalidAccessKeyId) used for {where}; check AWS_ACCESS_KEY_ID / "
            f"AWS_PROFILE or storage_options.key, and {set_endpoint}"
        ), False
    if code == "SignatureDoesNotMatch":
        return (
            f"the secret access key does not match the access key id "
            f"(SignatureDoesNotMatch) for {where}; check AWS_SECRET_ACCESS_KEY / "
            "AWS_PROFILE or storage_options.secret"
        ), False
    if code in ("ExpiredToken", "InvalidToken", "TokenRefreshRequired"):
        return (
            f"the session token is expired or invalid ({code}) for {where}; refresh "
            "the credentials (AWS_SESSION_TOKEN, `aws sso login` or "
            "storage_options.token)"
        ), False
    if code in _DENIED_CODES or isinstance(err, PermissionError):
        return (
            f"access denied ({code or 'HTTP 403'}) to {where} at {endpoint}: the "
            "credentials in use lack permission for it or are not valid there; check "
            "the bucket policy / IAM permissions and the credentials "
            "(AWS_ACCESS_KEY_ID / AWS_PROFILE or storage_options.key and secret)"
        ), False
    if isinstance(err, boto.NoCredentialsError | boto.PartialCredentialsError):
        return (
            f"no AWS credentials found for {where}; set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY or AWS_PROFILE, or storage_options key and secret "
            "(anon: true for a public bucket)"
        ), False
    if code in _TRANSIENT_CODES:
        return (
            f"the server at {endpoint} answered {code} for {where}; try again later",
            True,
        )
    failure = _network_failure(err)
    if failure:
        return (
            f"S3 endpoint {endpoint} {failure} for {where} ({type(err).__name__}); "
            f"check {set_endpoint} and that the server is up"
        ), True
    if isinstance(err, boto.ParamValidationError):
        return f"storage_options rejected: {scrub(str(err), storage_options)}", False
    detail = scrub(f"{type(err).__name__}: {err}", storage_options)
    return f"{detail} ({where} at {endpoint})", False
