"""Structured logs with structlog: JSON in production, readable on a terminal elsewhere.

Every line (ours, uvicorn's, SQLAlchemy's, any library's through stdlib logging) goes through
one processor chain that adds the request id, trace id and span id and then redacts: keys that
name secrets or personal data (password, token, code, email, address...) lose their value, and
emails, bearer tokens and JWTs are masked inside any string, exception text included.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from contextvars import ContextVar
from typing import Any, TextIO

import structlog
from opentelemetry import trace
from structlog.types import EventDict, Processor, WrappedLogger

REDACTED = "[redacted]"

# key names (lower-case, '-' -> '_') whose values are never logged
_SENSITIVE_PARTS = (
    "password",
    "passwd",
    "secret",
    "token",
    "authorization",
    "cookie",
    "api_key",
    "apikey",
    "code",
    "otp",
    "totp",
    "mfa",
    "recovery",
    "email",
    "address",
    "phone",
    "postal",
    "line1",
    "line2",
    "iban",
    "card",
    "dsn",
)
# keys that contain a sensitive part but are safe and useful
_SAFE_KEYS = frozenset({"status_code", "error_code", "currency_code", "country_code"})

_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]+")
_SECRET_ASSIGNMENT = re.compile(
    r"(?i)\b(password|passwd|token|secret|code|otp)(\"?\s*[:=]\s*\"?)([^\s\"',}&]+)"
)


def is_sensitive_key(key: str) -> bool:
    norm = key.lower().replace("-", "_")
    if norm in _SAFE_KEYS:
        return False
    return any(part in norm for part in _SENSITIVE_PARTS)


def redact_text(text: str) -> str:
    text = _JWT.sub("[jwt]", text)
    text = _BEARER.sub(r"\1 [redacted]", text)
    text = _EMAIL.sub("[email]", text)
    return _SECRET_ASSIGNMENT.sub(r"\1\2[redacted]", text)


def redact(value: Any, *, depth: int = 0) -> Any:
    """A copy of ``value`` with sensitive keys blanked and strings scrubbed."""
    if depth > 8:
        return value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {
            k: (
                REDACTED
                if isinstance(k, str) and is_sensitive_key(k)
                else redact(v, depth=depth + 1)
            )
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(redact(v, depth=depth + 1) for v in value)
    return value


def redaction_processor(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    result: EventDict = redact(event_dict)
    return result


# --- per-request context --------------------------------------------------------------------
# The middleware installs one mutable holder per request; code deeper in the request (an
# auth dependency) writes the user id into it, and the access line reads it at the end.
_request_context: ContextVar[MutableMapping[str, Any] | None] = ContextVar(
    "storefront_request_context", default=None
)


def begin_request(request_id: str | None) -> MutableMapping[str, Any]:
    """Install the request's holder; pair with :func:`end_request` (the middleware does)."""
    holder: MutableMapping[str, Any] = {"request_id": request_id}
    _request_context.set(holder)
    return holder


def end_request() -> None:
    """The request is over: later lines of this task, and of any task created from now on,
    no longer carry its id."""
    _request_context.set(None)
    structlog.contextvars.clear_contextvars()


def clear_request_context() -> None:
    """For background work started from inside a request (a job run in-process, a retry
    task): its lines are not that request's (it may run long after the request ended)."""
    end_request()


def current_request() -> MutableMapping[str, Any] | None:
    return _request_context.get()


def bind_user(user_id: str) -> None:
    """Attach the signed-in user's id to every later log line and the access line."""
    holder = _request_context.get()
    if holder is not None:
        holder["user_id"] = user_id


def add_request_context(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    holder = _request_context.get()
    if holder is not None:
        for key in ("request_id", "user_id"):
            if holder.get(key) is not None:
                event_dict.setdefault(key, holder[key])
    span = trace.get_current_span().get_span_context()
    if span.is_valid:
        event_dict.setdefault("trace_id", format(span.trace_id, "032x"))
        event_dict.setdefault("span_id", format(span.span_id, "016x"))
    elif holder is not None and holder.get("trace_id"):
        event_dict.setdefault("trace_id", holder["trace_id"])
    return event_dict


def _drop_color_message(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    event_dict.pop("color_message", None)  # uvicorn's duplicate of the message
    event_dict.pop("message", None)  # set on the record by any earlier stdlib formatter
    return event_dict


# Database drivers log every statement *with its parameters* at DEBUG (rows of personal data
# that no key-based redaction can recognise): they never log below WARNING.
QUIET_LOGGERS = ("aiosqlite", "asyncpg", "sqlalchemy.engine.Engine", "sqlalchemy.pool")
NOISY_LOGGERS = ("alembic.runtime.plugins",)  # one line per plugin, at every start


def configure_logging(
    *, json: bool, level: str = "INFO", stream: TextIO | None = None
) -> logging.Handler:
    """Route structlog and stdlib logging through one chain to ``stream`` (stderr)."""
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        add_request_context,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback
        )
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *shared],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _drop_color_message,
            structlog.processors.format_exc_info,
            redaction_processor,  # last before rendering: sees exception text too
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    handler.set_name("storefront")
    root = logging.getLogger()
    for existing in list(root.handlers):
        if existing.get_name() == "storefront":
            root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    for name in (*QUIET_LOGGERS, *NOISY_LOGGERS):
        logging.getLogger(name).setLevel(logging.WARNING)
    # uvicorn's loggers: through the root handler, once; its access log is replaced by ours
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    return handler


def get_logger(name: str) -> Any:
    return structlog.stdlib.get_logger(name)
