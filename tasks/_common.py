"""What the tasks share: no caching, and retries only for transient I/O failures."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext

from biasgate.errors import BiasgateError, SourceError

#: Task inputs are data frames: hashing them for a cache key would cost a pass over
#: the data on every call, and a stale cached result would hide a new input.
TASK_OPTIONS: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False}


def retry_only_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry condition: retry I/O that may succeed later, nothing else.

    A missing file, a denied permission or a bad config is final; a connection
    refused, a timeout or a throttled request is worth another try.
    """
    error = state.data if isinstance(state.data, BaseException) else None
    if isinstance(error, SourceError):
        return error.transient
    return not isinstance(error, BiasgateError)


@contextmanager
def noting_attempts() -> Iterator[None]:
    """When a transient I/O error ends the last attempt, say how often it was tried."""
    try:
        yield
    except SourceError as err:
        context = TaskRunContext.get()
        if err.transient and context is not None:
            attempts = context.task_run.run_count
            if attempts > context.task.retries:
                err.args = (f"{err} (gave up after {attempts} attempt(s))",)
        raise


class _NoTracebackForExpectedFailures(logging.Filter):
    """Bad input ends a task with a message that says what to do; a traceback of
    biasgate's own frames under it would only bury that message in the run logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, BiasgateError):
            record.exc_info, record.exc_text = None, None
        return True


logging.getLogger("prefect.task_runs").addFilter(_NoTracebackForExpectedFailures())
