"""Rate limiting at the HTTP edge: `RateLimitMiddleware` (pure ASGI) picks the policy for
each request, keys it (signed-in user, client address, account named in a sign-in body), and
answers 429 problem+json with `Retry-After` when a budget is spent. Every limited response
carries the IETF httpapi draft's `RateLimit-Policy` and `RateLimit` headers (decision 0041).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.formparsers import MultiPartException
from starlette.requests import Request, cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from storefront.auth.devices import COOKIE as DEVICE_COOKIE
from storefront.auth.devices import DeviceCookies
from storefront.auth.tokens import InvalidToken, TokenService
from storefront.infra.ratelimit import DistributedRateLimiter, Limit, Outcome, parse_policy
from storefront.kit.client_address import client_address
from storefront.kit.emails import normalize_email
from storefront.kit.errors import NotAcceptable
from storefront.kit.negotiation import negotiate
from storefront.telemetry import metrics
from storefront.web.msgpack_bodies import is_msgpack
from storefront.web.msgpack_bodies import to_json as msgpack_to_json
from storefront.web.problems import problem_response

logger = logging.getLogger("storefront.ratelimit")


# --- the middleware -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rule:
    """A route with its own policy. ``path`` is a route template (``/shops/{shop_id}/...``).

    ``account_field`` names the body field (JSON or form) that identifies the account a
    sign-in targets, so guessing against one account is limited whatever address it comes
    from. ``accept`` restricts the rule to requests whose ``Accept`` header *negotiates* one
    of those media types among ``offers`` (the route's own offers, most preferred first), with
    the route's own negotiation: ``text/*`` or ``*/*;q=0.1, text/csv`` is charged as the CSV
    it gets, and a header the route answers 406 matches no rule.

    ``account_token`` says the account field holds a signed token of that type (the MFA
    token): the budget is then the account the token names, once its signature verifies, so
    a new token (a new password sign-in) brings no new budget; a token that does not verify
    is charged to the client address.
    """

    method: str
    path: str
    policy: str
    account_field: str | None = None
    account_token: str | None = None
    accept: tuple[str, ...] = ()
    offers: tuple[str, ...] = ()
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        regex = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(self.path))
        object.__setattr__(self, "pattern", re.compile(f"^{regex}$"))

    def applies(self, method: str, path: str, headers: Headers) -> bool:
        if method != self.method or not self.pattern.match(path):
            return False
        if self.accept:
            try:
                media = negotiate(headers.get("accept"), self.offers or self.accept)
            except NotAcceptable:
                return False
            return media in self.accept
        return True


@dataclass(frozen=True, slots=True)
class Policies:
    anonymous: tuple[Limit, ...]
    user: tuple[Limit, ...]
    auth: tuple[Limit, ...]
    auth_account: tuple[Limit, ...]
    expensive: tuple[Limit, ...]
    operations: tuple[Limit, ...] = ()  # per process (``hit_local``), per address
    consents: tuple[Limit, ...] = ()  # consent changes, per user (decision 0128)

    @classmethod
    def parse(
        cls,
        *,
        anonymous: str,
        user: str,
        auth: str,
        auth_account: str,
        expensive: str,
        operations: str = "120/minute",
        consents: str = "10/minute;50/day",
    ) -> Policies:
        return cls(
            anonymous=parse_policy("anonymous", anonymous),
            user=parse_policy("user", user),
            auth=parse_policy("auth", auth),
            auth_account=parse_policy("auth-account", auth_account),
            expensive=parse_policy("expensive", expensive),
            operations=parse_policy("operations", operations),
            consents=parse_policy("consents", consents),
        )


def _digest(value: str) -> str:
    # Keys never hold an email address or token in clear: Redis is not a place for them.
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def _structured_headers(outcomes: Sequence[Outcome]) -> dict[str, str]:
    policy = ", ".join(
        f'"{o.limit.name}";q={o.limit.item.amount};w={o.limit.window_seconds}' for o in outcomes
    )
    state = ", ".join(f'"{o.limit.name}";r={o.remaining};t={o.reset_seconds}' for o in outcomes)
    return {"RateLimit-Policy": policy, "RateLimit": state}


class RateLimitMiddleware:
    """Pure ASGI: spend the request's budgets before the app runs; refuse with 429 when spent.

    ``limiter`` and ``tokens`` are looked up per request (they live in the resources the
    lifespan builds); ``exempt`` paths (probes, metrics, docs) are never limited.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        policies: Policies,
        rules: Sequence[Rule],
        resources: Callable[[Scope], tuple[DistributedRateLimiter, TokenService, Sequence[Any]]],
        exempt_prefixes: tuple[str, ...] = (),
        devices: Callable[[Scope], DeviceCookies] | None = None,
    ) -> None:
        self.app = app
        self.policies = policies
        self.rules = tuple(rules)
        self.resources = resources
        self.exempt_prefixes = exempt_prefixes
        self.devices = devices

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] == "OPTIONS"
            or scope["path"].startswith(self.exempt_prefixes)
        ):
            await self.app(scope, receive, send)
            return
        limiter, tokens, trusted = self.resources(scope)
        headers = Headers(scope=scope)
        address = client_address(scope, trusted)
        subject = _subject(headers, tokens)
        rule = next(
            (r for r in self.rules if r.applies(scope["method"], scope["path"], headers)), None
        )
        checks: list[tuple[tuple[Limit, ...], str]] = []
        if rule is None:
            if subject is not None:
                checks.append((self.policies.user, f"user:{subject}"))
            else:
                checks.append((self.policies.anonymous, f"addr:{address}"))
        elif rule.policy == "auth":
            checks.append((self.policies.auth, f"addr:{address}"))
            if rule.account_field is not None:
                account, receive = await _account(scope, receive, rule.account_field)
                if rule.account_token is not None:
                    # the account the signed token names; anything else: the address
                    named = _token_subject(tokens, account, rule.account_token)
                    key = f"user:{_digest(named)}" if named else f"addr:{address}"
                    checks.append((self.policies.auth_account, f"account:{key}"))
                elif account is not None:
                    # the route's own normalisation, so every spelling of one address shares
                    # one budget (an MFA token is just trimmed and lower-cased by it)
                    key = _digest(normalize_email(account))
                    device = self._known_device(scope, headers, key)
                    if device is not None:
                        # the account's own browser has a budget of its own, as in the
                        # sign-in throttle: guessing from elsewhere cannot spend it
                        # (decision 0186); a stolen cookie buys one device's budget
                        key = f"{key}:device:{_digest(device)}"
                    checks.append((self.policies.auth_account, f"account:{key}"))
        elif rule.policy == "operations":
            checks.append((self.policies.operations, f"addr:{address}"))
        else:  # "expensive" or "consents": per user, else per address
            owner = f"user:{subject}" if subject is not None else f"addr:{address}"
            if rule.policy == "consents":
                checks.append((self.policies.consents, owner))
            else:
                checks.append((self.policies.expensive, owner))

        outcomes: list[Outcome] = []
        local = rule is not None and rule.policy == "operations"
        for limits, key in checks:
            outcomes.extend(await (limiter.hit_local if local else limiter.hit)(limits, key))
        rate_headers = _structured_headers(outcomes)
        refused = [o for o in outcomes if not o.allowed]
        if refused:
            retry_after = max(o.reset_seconds for o in refused)
            names = ", ".join(o.limit.name for o in refused)
            for name in {o.limit.name for o in refused}:
                metrics.record_rate_limit_refusal(name)  # the rate-limit alert reads it
            response = problem_response(
                Request(scope),
                429,
                detail=f"Rate limit '{names}' exceeded; retry in {retry_after} s",
                headers={**rate_headers, "Retry-After": str(retry_after)},
            )
            await response(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                mutable = MutableHeaders(scope=message)
                for name, value in rate_headers.items():
                    mutable[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _known_device(self, scope: Scope, headers: Headers, account: str) -> str | None:
        """The device id of a valid device cookie for ``account`` (the digest the sign-in
        throttle keys it by, ``identity.service.account_key``), else None."""
        cookie = headers.get("cookie")
        if self.devices is None or not cookie:
            return None
        return self.devices(scope).device_of(account, cookie_parser(cookie).get(DEVICE_COOKIE))


def _subject(headers: Headers, tokens: TokenService) -> str | None:
    """The signed-in user's id from a valid bearer token; an invalid token counts as none
    (keying by a token the client can vary at will would hand it unlimited budgets)."""
    authorization = headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    try:
        return tokens.verify(token.strip()).subject
    except InvalidToken:
        return None


def _token_subject(tokens: TokenService, token: str | None, token_type: str) -> str | None:
    if token is None:
        return None
    try:
        return tokens.verify(token.strip(), expected_type=token_type).subject
    except InvalidToken:
        return None


async def _account(scope: Scope, receive: Receive, field_name: str) -> tuple[str | None, Receive]:
    """Read the body to find the targeted account; hand the app a replay of it.

    The whole body is read (BodyLimitMiddleware, outside this one, bounds it) and parsed the
    way the route will parse it: forms (urlencoded and multipart) with Starlette's own form
    parser, MessagePack converted to JSON as the API converts it, anything else as JSON
    with the standard library, the last of repeated fields
    winning in both, as FastAPI does. So no padding, encoding or repetition of a field
    names one account to the budget and another to the route.
    """
    messages: list[Message] = []
    body = b""
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break

    async def replay() -> Message:
        if messages:
            return messages.pop(0)
        return await receive()

    value = await _body_field(scope, body, field_name)
    if not isinstance(value, str) or not value.strip():
        return None, replay
    return value, replay


async def _body_field(scope: Scope, body: bytes, field_name: str) -> object:
    media = Headers(scope=scope).get("content-type", "").partition(";")[0].strip().lower()
    if media in ("application/x-www-form-urlencoded", "multipart/form-data"):
        sent = False

        async def once() -> Message:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        request = Request({k: v for k, v in scope.items() if k != "app"}, once)
        try:
            async with request.form() as form:
                value = form.get(field_name)
        except MultiPartException:
            return None
        return value if isinstance(value, str) else None
    if is_msgpack(media):
        # the route sees MessagePack as the JSON it converts to (web/msgpack_bodies.py)
        try:
            body = msgpack_to_json(body)
        except ValueError:
            return None
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    return parsed.get(field_name) if isinstance(parsed, dict) else None
