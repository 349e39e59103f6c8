"""First-deployment commands: ``storefront admin create`` and ``storefront secrets generate``.

Production never gets demo data (decision 0105): its first platform admin is created here,
with a password typed at a prompt or piped on standard input (never a command-line
argument, which other users of the host can read in the process list and which shells keep
in their history), and its secrets come from ``secrets generate``.
"""

from __future__ import annotations

import asyncio
import base64
import secrets as random_source
import sys
from datetime import UTC, datetime
from typing import Annotated

import typer
from pydantic import ValidationError

from storefront.kit.startup import CommandRefused
from storefront.settings import get_settings

admin_app = typer.Typer(help="Platform administrators.", no_args_is_help=True)
secrets_app = typer.Typer(help="The secrets a production deployment needs.", no_args_is_help=True)

MASTER_KEY_VERSION = "v1"


def _read_password() -> str:
    """One line of standard input when it is a pipe or a file; at a terminal, a hidden
    prompt asked twice (``--password-stdin`` too: a terminal would echo the line)."""
    if not sys.stdin.isatty():
        line = sys.stdin.readline()
        password = line.removesuffix("\n").removesuffix("\r")
        if not password:
            raise CommandRefused("no password on standard input (one line is read)")
        return password
    password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return str(password)


@admin_app.command("create")
def create(
    email: Annotated[str, typer.Argument(help="The admin's email address (their sign-in).")],
    name: Annotated[str, typer.Option("--name", help="Display name.")] = "Platform Admin",
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin",
            help="Read the password from standard input (one line), as is done whenever "
            "standard input is not a terminal; at a terminal the prompt hides it.",
        ),
    ] = False,
) -> None:
    """Create a platform admin (the first one of a new deployment). The password is asked
    for (hidden, twice) or read from standard input; it is never a command-line argument."""
    from storefront.auditlog.log import record
    from storefront.identity.schemas import RegisterIn
    from storefront.identity.service import IdentityService
    from storefront.kit.errors import DomainError
    from storefront.resources import open_resources

    settings = get_settings()  # a configuration error stops us before the password prompt
    password = _read_password()  # --password-stdin: what a pipe gets anyway
    try:
        account = RegisterIn(email=email, password=password, display_name=name)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in exc.errors(include_url=False, include_input=False)
        )
        raise CommandRefused(f"not created: {problems}") from None

    async def main() -> str:
        try:
            async with (
                open_resources(settings, role="cli") as resources,
                resources.sessionmaker() as session,
                session.begin(),
            ):
                identity = IdentityService(session, resources.passwords, resources.vault)
                if await identity.by_email(account.email) is not None:
                    raise CommandRefused(
                        f"an account with the email {account.email} already exists; "
                        "nothing was changed"
                    )
                user = await identity.register(
                    email=account.email, password=account.password, display_name=name
                )
                user.is_admin = True
                record(
                    session,
                    "user.admin_created",
                    object_type="user",
                    object_id=user.id,
                    details={"via": "cli"},
                )
                return str(user.id)
        except DomainError as exc:  # the password policy, or a concurrent registration
            raise CommandRefused(f"not created: {exc.detail}") from None

    user_id = asyncio.run(main())
    typer.echo(f"Created platform admin {account.email} (user {user_id}).")
    typer.echo("They sign in with that email and the password given; nothing else was printed.")


def _key() -> str:
    """32 random bytes, URL-safe base64 without padding (the form the settings accept and
    an env file needs no quoting for)."""
    return base64.urlsafe_b64encode(random_source.token_bytes(32)).decode().rstrip("=")


def production_secrets() -> dict[str, str]:
    """A fresh value for every secret setting production requires."""
    return {
        "STOREFRONT_AUTH__JWT_SECRET": random_source.token_urlsafe(48),
        "STOREFRONT_PRIVACY__MASTER_KEYS": f"{MASTER_KEY_VERSION}:{_key()}",
        "STOREFRONT_PRIVACY__BLIND_INDEX_KEY": _key(),
    }


@secrets_app.command("generate")
def generate() -> None:
    """Print an env file with a new value for every secret production needs.

    For a NEW deployment: these secrets seal data at rest, so a running deployment must keep
    its own (a new master key goes first in STOREFRONT_PRIVACY__MASTER_KEYS, followed by the
    old one, then `storefront keys rotate-master`; see docs/operations.md)."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%MZ")
    lines = [
        f"# Storefront production secrets, made by `storefront secrets generate` at {now}.",
        "# Keep this file private (umask 077) and out of version control. These values seal",
        "# data at rest: losing them loses the data, and a running deployment keeps its own.",
        "# Also set STOREFRONT_ENVIRONMENT=production, STOREFRONT_DATABASE_URL and the other",
        "# settings production requires (they are not secrets: README, Configuration).",
    ]
    lines.extend(f"{name}={value}" for name, value in production_secrets().items())
    typer.echo("\n".join(lines))
