"""What an operator sees when a command cannot start: one clear message, not a traceback.

Expected failures (a setting that does not validate, a missing production secret, a
database or Redis that cannot be reached or refuses the credentials) are explained in a few
lines that name the environment variable to fix, and the process exits with a code that says
which kind of problem it was (docs/operations.md, "Exit codes"). Anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import difflib
import os
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_settings import SettingsError
from sqlalchemy.engine import make_url

ENV_PREFIX = "STOREFRONT_"
NESTED = "__"

EXIT_REFUSED = 1  # the command ran and refused (or found a problem): see its message
EXIT_CONFIG = 2  # a setting is missing or invalid (and command-line usage errors)
EXIT_UNAVAILABLE = 3  # a dependency (database, Redis, broker) is unreachable or refuses us

# STOREFRONT_* variables that are not settings: the test suite's, the benchmark's, the fuzzer's,
# the loopback cluster scripts' (STOREFRONT_CLUSTER_DIR, deploy/cluster)
NOT_SETTINGS_PREFIXES = (
    "STOREFRONT_TEST_",
    "STOREFRONT_BENCH_",
    "STOREFRONT_FUZZ_",
    "STOREFRONT_CLUSTER_",
)


@dataclass(frozen=True, slots=True)
class Failure:
    """An expected failure, explained: what to print and the exit code."""

    message: str
    exit_code: int


class CommandRefused(Exception):
    """A command refuses to do what it was asked (printed as is, exit code 1)."""

    def __init__(self, message: str, exit_code: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def env_name(loc: tuple[int | str, ...] | list[int | str]) -> str:
    """The environment variable of a settings field: ("database", "pool_size") ->
    STOREFRONT_DATABASE__POOL_SIZE; list items (an index) name their field."""
    parts = [str(p).upper() for p in loc if isinstance(p, str)]
    return ENV_PREFIX + NESTED.join(parts) if parts else "STOREFRONT_* settings"


def known_env_names(settings_type: type[BaseModel]) -> set[str]:
    """Every STOREFRONT_* name the settings read: top-level fields and nested groups."""
    names: set[str] = set()
    for name, field in settings_type.model_fields.items():
        top = ENV_PREFIX + name.upper()
        names.add(top)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names.update(f"{top}{NESTED}{sub.upper()}" for sub in annotation.model_fields)
    return names


def keyed_env_groups(settings_type: type[BaseModel]) -> dict[str, set[str]]:
    """Groups keyed by a name the operator chooses (``discovery.services``, a dict of models):
    their prefix (STOREFRONT_DISCOVERY__SERVICES__) and the fields each entry has."""
    groups: dict[str, set[str]] = {}
    for name, field in settings_type.model_fields.items():
        annotation = field.annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            continue
        for sub, sub_field in annotation.model_fields.items():
            args = get_args(sub_field.annotation)
            if get_origin(sub_field.annotation) is dict and len(args) == 2:
                value = args[1]
                if isinstance(value, type) and issubclass(value, BaseModel):
                    prefix = f"{ENV_PREFIX}{name.upper()}{NESTED}{sub.upper()}{NESTED}"
                    groups[prefix] = {f.upper() for f in value.model_fields}
    return groups


def _in_keyed_group(upper: str, groups: dict[str, set[str]]) -> bool:
    for prefix, fields in groups.items():
        key, _, leaf = upper.removeprefix(prefix).partition(NESTED)
        if upper.startswith(prefix) and key and leaf in fields:
            return True
    return False


def unknown_env_warnings(
    environ: Mapping[str, str], settings_type: type[BaseModel]
) -> Iterator[str]:
    """One line per STOREFRONT_* variable no setting reads, with the closest known name."""
    known = known_env_names(settings_type)
    keyed = keyed_env_groups(settings_type)
    for key in sorted(environ):
        upper = key.upper()
        if not upper.startswith(ENV_PREFIX) or upper in known or _in_keyed_group(upper, keyed):
            continue
        if upper.startswith(NOT_SETTINGS_PREFIXES):
            continue
        close = difflib.get_close_matches(upper, known, n=1, cutoff=0.75)
        hint = f"; did you mean {close[0]}?" if close else ""
        yield f"warning: {key} is not a Storefront setting and is ignored{hint}"


def _validation_lines(exc: ValidationError) -> list[str]:
    lines: list[str] = []
    for error in exc.errors(include_url=False, include_input=False):
        message = str(error["msg"]).removeprefix("Value error, ")
        loc = tuple(error["loc"])
        if not loc and message.startswith("unsafe production settings: "):
            lines.append("unsafe production settings (STOREFRONT_ENVIRONMENT=production):")
            problems = message.removeprefix("unsafe production settings: ").split("; ")
            lines.extend(f"  - {problem}" for problem in problems)
        elif not loc:
            lines.append(f"  - {message}")
        else:
            lines.append(f"  - {env_name(loc)}: {message}")
    return lines


def _settings_error_line(exc: SettingsError) -> str:
    text = str(exc)
    # 'error parsing value for field "database" from source "EnvSettingsSource"'
    if 'field "' in text:
        field = text.split('field "', 1)[1].split('"', 1)[0]
        return (
            f"  - {env_name((field,))}: not valid JSON; set the group's fields one by one "
            f"instead ({env_name((field,))}__<FIELD>=...)"
        )
    return f"  - {text}"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, what it wraps (SQLAlchemy's ``orig``), its causes and contexts."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for nxt in (getattr(current, "orig", None), current.__cause__, current.__context__):
            if isinstance(nxt, BaseException):
                pending.append(nxt)
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)


def safe_url(url: str) -> str:
    """A URL fit to print: the password masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not even a URL: say nothing of its content
        return "(unparsable URL)"


def _raised_in(error: BaseException, *modules: str) -> bool:
    """Whether ``error`` passed through a module of ``modules`` (or a submodule of one)."""
    tb = error.__traceback__
    while tb is not None:
        module = str(tb.tb_frame.f_globals.get("__name__", ""))
        if any(module == m or module.startswith(m + ".") for m in modules):
            return True
        tb = tb.tb_next
    return False


def _database_problem(error: BaseException, where: str) -> tuple[str, str] | None:
    """(problem, fix) when ``error`` says the database is unusable; None otherwise."""
    import asyncpg  # type: ignore[import-untyped]

    auth_errors = (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError)
    if isinstance(error, auth_errors):
        return (
            f"the database server{where} refused the credentials: {error}",
            "correct the user name and password in STOREFRONT_DATABASE_URL",
        )
    if isinstance(error, asyncpg.InvalidCatalogNameError):
        return (
            f"the database{where} does not exist: {error}",
            "create it (createdb <name>) or correct the database name in "
            "STOREFRONT_DATABASE_URL, then run `storefront migrate`",
        )
    text = str(error)
    if isinstance(error, asyncpg.UndefinedTableError) or (
        type(error).__name__ == "OperationalError" and "no such table" in text
    ):
        return (
            f"the database{where} is not migrated ({text})",
            "run `storefront migrate` (and check STOREFRONT_DATABASE_URL)",
        )
    if type(error).__name__ == "OperationalError" and "unable to open database file" in text:
        return (
            f"cannot open the SQLite database{where}: {text}",
            "check the path in STOREFRONT_DATABASE_URL and that its directory is writable",
        )
    # storefront.kit.db: creating a SQLite file's directory
    if not isinstance(error, OSError) or not _raised_in(
        error, "asyncpg", "sqlalchemy", "aiosqlite", "storefront.kit.db"
    ):
        return None
    if "sqlite+aiosqlite://" in where:
        return (
            f"cannot open the SQLite database{where}: {error}",
            "check the path in STOREFRONT_DATABASE_URL and that its directory can be created "
            "and written",
        )
    if isinstance(error, socket.gaierror):
        return (
            f"cannot resolve the database host{where}: {error.strerror or error}",
            "correct the host name in STOREFRONT_DATABASE_URL",
        )
    if isinstance(error, ConnectionRefusedError):
        return (
            f"cannot connect to the database{where}: connection refused",
            "start the database server, or correct the host and port in STOREFRONT_DATABASE_URL",
        )
    return (
        f"cannot connect to the database{where}: {error or type(error).__name__}",
        "check that the database server is running and reachable (STOREFRONT_DATABASE_URL)",
    )


def _dependency_failure(exc: BaseException, database_url: str | None) -> Failure | None:
    """The first dependency in the exception chain that failed: Redis, the broker, the
    database (a wrapper comes before what it wraps, so a Redis error caused by a refused
    connection is Redis's)."""
    where = f" at {safe_url(database_url)}" if database_url else ""
    for error in _chain(exc):
        kind = type(error)
        if kind.__module__.startswith("redis") and kind.__name__ in {
            "ConnectionError",
            "TimeoutError",
            "AuthenticationError",
        }:
            return Failure(
                f"error: cannot use Redis: {error}\n"
                "fix: start Redis or correct STOREFRONT_REDIS_URL (or STOREFRONT_BROKER_URL "
                "when the broker is Redis)",
                EXIT_UNAVAILABLE,
            )
        if kind.__module__.startswith(("aiormq", "aio_pika", "pamqp")):
            return Failure(
                f"error: cannot connect to the message broker: {error}\n"
                "fix: start it or correct STOREFRONT_BROKER_URL",
                EXIT_UNAVAILABLE,
            )
        found = _database_problem(error, where)
        if found is not None:
            problem, fix = found
            return Failure(f"error: {problem}\nfix: {fix}", EXIT_UNAVAILABLE)
    return None


def explain(exc: BaseException, *, database_url: str | None = None) -> Failure | None:
    """The operator's message for an expected failure; None for a bug (keep the traceback)."""
    from storefront.kit.master_keys import MasterKeyError

    if isinstance(exc, CommandRefused):
        return Failure(f"error: {exc.message}", exc.exit_code)
    for error in _chain(exc):
        if isinstance(error, ValidationError) and error.title == "Settings":
            return Failure(
                "error: invalid settings:\n"
                + "\n".join(_validation_lines(error))
                + "\nfix: correct the environment variables named above "
                "(README, Configuration)",
                EXIT_CONFIG,
            )
        if isinstance(error, SettingsError):
            return Failure("error: invalid settings:\n" + _settings_error_line(error), EXIT_CONFIG)
        if isinstance(error, MasterKeyError):
            return Failure(
                f"error: personal-data keys: {error}\n"
                "fix: check STOREFRONT_PRIVACY__MASTER_KEYS / STOREFRONT_PRIVACY__MASTER_KEY_FILE "
                "and STOREFRONT_PRIVACY__BLIND_INDEX_KEY (`storefront secrets generate` makes "
                "new ones for a new deployment)",
                EXIT_CONFIG,
            )
    return _dependency_failure(exc, database_url)


def require_listenable(host: str, port: int, variable: str) -> None:
    """Refuse to start when ``host:port`` cannot be listened on, naming ``variable`` (the
    port's setting): uvicorn binds only after the application has started, then logs one
    errno line and exits 3, and the metrics listener only logged a warning. The probe binds
    as uvicorn and prometheus-client do (SO_REUSEADDR) and closes at once."""
    import errno

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise CommandRefused(
                f"{variable}={port}: {host}:{port} is already in use by another process\n"
                f"fix: stop that process (`ss -ltnp 'sport = :{port}'` shows it) or set "
                f"{variable} to a free port",
                exit_code=EXIT_UNAVAILABLE,
            ) from None
        if exc.errno == errno.EACCES:
            raise CommandRefused(
                f"{variable}={port}: not allowed to listen on {host}:{port} (ports below 1024 "
                "need root or CAP_NET_BIND_SERVICE)\n"
                f"fix: set {variable} to 1024 or above and let the load balancer or container "
                "map the public port",
                exit_code=EXIT_CONFIG,
            ) from None
        if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
            unresolved = isinstance(exc, socket.gaierror)
            what = "does not resolve" if unresolved else "is not an address of this machine"
            raise CommandRefused(
                f"STOREFRONT_HOST={host} {what} ({exc.strerror})\n"
                "fix: set STOREFRONT_HOST to one of its addresses, 127.0.0.1, or 0.0.0.0 (all)",
                exit_code=EXIT_CONFIG,
            ) from None
        raise CommandRefused(
            f"cannot listen on {host}:{port} ({variable}): {exc.strerror or exc}\n"
            f"fix: check STOREFRONT_HOST and {variable}",
            exit_code=EXIT_UNAVAILABLE,
        ) from None


def configured_database_url(environ: Mapping[str, str] | None = None) -> str | None:
    """The database URL as configured (for messages only; the settings may not validate)."""
    env = os.environ if environ is None else environ
    for key, value in env.items():
        if key.upper() == "STOREFRONT_DATABASE_URL":
            return value
    return None
