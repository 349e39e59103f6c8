"""The drills' load: an open loop of mixed traffic at a fixed arrival rate.

Arrivals are scheduled at ``i / rate`` seconds whatever the answers do (a closed loop would
slow down with the system and hide the outage); each request's latency runs from its
scheduled time. The mix (shares of ``LoadConfig.mix``):

- ``read``: the catalog, signed out: a product page of the drill's shop or one product;
- ``signin``: ``POST /auth/login`` of one of the drill's customers (its new token is used
  from then on); retried only where the answer says nothing was done (see ``should_retry``);
- ``order``: ``POST /shops/{id}/orders`` with an ``Idempotency-Key``, retried with the same
  key; every 201 is recorded for the lost-write check (``writes``);
- ``pay``: ``POST .../orders/{id}/payments`` (the payment emulator behind the API) with an
  ``Idempotency-Key`` for an acknowledged order; a read when none waits.

Retries, as a real client: reads and keyed writes, on a connection error, a timeout, a 5xx, a
429 or a 409 ``idempotency-in-flight`` (the first attempt's instance died holding the key),
after ``Retry-After`` or a short backoff, until ``retry_deadline`` after the scheduled time.
Sign-ins (no key) only on a refused connection, a 503 or a 429: answers that say the request
did nothing (the balancer found no instance, the instance refused before checking the password
or starting a session: a dependency away, hashing busy, a rate limit), as a browser or an app
sends a sign-in again after ``Retry-After``; even a repeat that did get through only starts a
second session the client never uses. Never after a timeout, a dropped connection or another
5xx, which may have run the password check (and a hash queued behind a slow one only adds to
the load that made it slow).

Every simulated client sends its own ``X-Forwarded-For`` address (HAProxy appends its own;
the API trusts loopback as its proxy), so the per-address rate limits see many clients, as
in production, rather than one.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.drills.stats import Attempt, Outcome
from bench.drills.writes import Ack, Intent

API = "/api/v1"
PASSWORD = "drill-Passw0rd-availability-19"  # noqa: S105 - throwaway accounts of a drill
PRICE_A, PRICE_B = 1, 1001  # cents: the quantities (1..100 each) make every total unique
RETRIED_KINDS = frozenset({"read", "order", "pay"})
# requests per second, all kinds: what the loopback cluster on the shared two-core machine
# serves with headroom (p99 about 2.5 s at a load average of 14 from other work)
DEFAULT_RATE = 10.0


@dataclass(frozen=True, slots=True)
class LoadConfig:
    base_url: str = "http://127.0.0.1:8100"
    rate: float = DEFAULT_RATE
    mix: tuple[tuple[str, float], ...] = (
        ("read", 0.55),
        ("signin", 0.05),
        ("order", 0.25),
        ("pay", 0.15),
    )
    customers: int = 16
    timeout: float = 10.0  # one attempt
    retry_deadline: float = 90.0  # a request's retries end this long after its scheduled time
    seed: int = 19


def should_retry(kind: str, status: int | None, error: str | None, problem_type: str) -> bool:
    """Whether a real client sends this request again (with the same Idempotency-Key)."""
    if kind == "signin":
        return error == "connect" or status in {429, 503}
    if kind not in RETRIED_KINDS:
        return False
    if error is not None or status is None:
        return True
    if status >= 500 or status == 429:
        return True
    return status == 409 and problem_type.endswith("idempotency-in-flight")


def order_quantities(sequence: int) -> tuple[int, int]:
    """The quantities of products A and B of a customer's ``sequence``-th order: unique per
    customer for sequence < 10,000 (total = a + 1001 b, a and b in 1..100)."""
    if not 0 <= sequence < 10_000:
        raise ValueError("at most 10,000 orders per customer")
    return sequence % 100 + 1, sequence // 100 + 1


class SetupFailed(Exception):
    pass


@dataclass(slots=True)
class Customer:
    email: str
    ip: str
    id: str = ""
    token: str = ""
    orders: int = 0
    products: tuple[str, str] = ("", "")  # its own A and B (no lock shared with the others)


@dataclass(slots=True)
class Answer:
    attempt: Attempt
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def problem_type(self) -> str:
        return str(self.body.get("type", "")) if isinstance(self.body, dict) else ""


class Load:
    def __init__(self, config: LoadConfig, session: aiohttp.ClientSession) -> None:
        self.config = config
        self.session = session
        self.rng = random.Random(config.seed)  # noqa: S311 - a load mix, not a secret
        self.run_id = uuid.uuid4().hex[:8]
        self.loop = asyncio.get_running_loop()
        self.t0 = self.loop.time()
        self.outcomes: list[Outcome] = []
        self.intents: list[Intent] = []
        self.acks: list[Ack] = []
        self.paid_acks: list[str] = []
        self.payable: deque[tuple[Customer, str]] = deque()
        self.customers: list[Customer] = []
        self.shop_id = ""
        self.window_s = 0.0
        self._next_customer = 0

    def clock(self) -> float:
        return self.loop.time() - self.t0

    # -- one HTTP attempt ----------------------------------------------------------------

    async def call(
        self,
        method: str,
        path: str,
        *,
        ip: str,
        json: Any = None,
        token: str | None = None,
        key: str | None = None,
        expect: int = 200,
    ) -> Answer:
        headers = {"Accept": "application/json", "X-Forwarded-For": ip}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if key:
            headers["Idempotency-Key"] = key
        start = self.clock()
        status: int | None = None
        error: str | None = None
        body: Any = None
        answer_headers: dict[str, str] = {}
        try:
            async with self.session.request(
                method,
                self.config.base_url + path,
                json=json,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.config.timeout),
            ) as response:
                status = response.status
                answer_headers = dict(response.headers)
                text = await response.text()
                if text and "json" in response.headers.get("Content-Type", ""):
                    try:
                        body = await response.json(content_type=None)
                    except ValueError:
                        body = text
        except TimeoutError:
            status, error = None, "timeout"
        except aiohttp.ServerDisconnectedError:
            status, error = None, "disconnected"
        except aiohttp.ClientConnectorError:
            status, error = None, "connect"
        except aiohttp.ClientError as exc:
            status, error = None, type(exc).__name__
        problem = None
        if status != expect and isinstance(body, dict) and body.get("type"):
            problem = str(body["type"]).rstrip("/").rsplit("/", 1)[-1]
        attempt = Attempt(start, self.clock(), status == expect, status, error, problem)
        return Answer(attempt, body, answer_headers)

    async def request(
        self, kind: str, scheduled: float, method: str, path: str, **kwargs: Any
    ) -> tuple[Outcome, Answer]:
        """One request of the load with the client's retries (same Idempotency-Key)."""
        attempts: list[Attempt] = []
        while True:
            answer = await self.call(method, path, **kwargs)
            attempts.append(answer.attempt)
            a = answer.attempt
            if a.ok or not should_retry(kind, a.status, a.error, answer.problem_type):
                break
            delay = min(0.5 * 2 ** (len(attempts) - 1), 5.0)
            retry_after = answer.headers.get("Retry-After", "")
            if retry_after.isdigit():
                delay = min(float(retry_after), 5.0)
            delay *= 0.5 + self.rng.random()
            if self.clock() + delay - scheduled > self.config.retry_deadline:
                break
            await asyncio.sleep(delay)
        return Outcome(kind, scheduled, tuple(attempts)), answer

    # -- set-up: the drill's own shop, products and customers ----------------------------

    async def must(self, method: str, path: str, expect: int, **kwargs: Any) -> Any:
        outcome, answer = await self.request(
            "read", self.clock(), method, path, expect=expect, **kwargs
        )
        if not outcome.ok:
            raise SetupFailed(
                f"{method} {path}: {answer.attempt.status or answer.attempt.error} {answer.body}"
            )
        return answer.body

    async def register(self, email: str, ip: str) -> tuple[str, str]:
        user = await self.must(
            "POST",
            f"{API}/auth/register",
            201,
            ip=ip,
            json={"email": email, "password": PASSWORD, "display_name": "Drill"},
            key=str(uuid.uuid4()),
        )
        tokens = await self.must(
            "POST", f"{API}/auth/login", 200, ip=ip, json={"email": email, "password": PASSWORD}
        )
        return str(user["id"]), str(tokens["access_token"])

    async def setup(self) -> None:
        ip = f"10.19.0.{self.rng.randrange(1, 250)}"
        _, owner = await self.register(f"drill-owner-{self.run_id}@example.com", ip)
        shop = await self.must(
            "POST",
            f"{API}/shops",
            201,
            ip=ip,
            token=owner,
            key=str(uuid.uuid4()),
            json={"name": f"Drill {self.run_id}", "slug": f"drill-{self.run_id}"},
        )
        self.shop_id = str(shop["id"])
        await self.must(
            "PATCH",
            f"{API}/shops/{self.shop_id}/order-limits",
            200,
            ip=ip,
            token=owner,
            json={"max_pending_units": 1_000_000, "max_pending_stock_percent": 100},
        )
        self.customers = [
            Customer(f"drill-{self.run_id}-{n}@example.com", f"10.19.1.{n + 1}")
            for n in range(self.config.customers)
        ]
        for n, customer in enumerate(self.customers):
            ids = []
            for sku, price in ((f"DRILL-{n}-A", PRICE_A), (f"DRILL-{n}-B", PRICE_B)):
                product = await self.must(
                    "POST",
                    f"{API}/shops/{self.shop_id}/products",
                    201,
                    ip=ip,
                    token=owner,
                    key=str(uuid.uuid4()),
                    json={
                        "sku": sku,
                        "name": f"Drill {sku}",
                        "description": "Availability drill.",
                        "price_cents": price,
                        "currency": "EUR",
                        "stock": 1_000_000_000,
                        "category": "drill",
                    },
                )
                ids.append(str(product["id"]))
            customer.products = (ids[0], ids[1])
            customer.id, customer.token = await self.register(customer.email, customer.ip)

    # -- the operations ------------------------------------------------------------------

    def customer(self) -> Customer:
        customer = self.customers[self._next_customer % len(self.customers)]
        self._next_customer += 1
        return customer

    async def read(self, scheduled: float) -> None:
        ip = f"10.20.{self.rng.randrange(256)}.{self.rng.randrange(1, 255)}"
        if self.rng.random() < 0.5:
            path = f"{API}/shops/{self.shop_id}/products?limit=10"
        else:
            product = self.rng.choice(self.customers).products[0]
            path = f"{API}/shops/{self.shop_id}/products/{product}"
        outcome, _ = await self.request("read", scheduled, "GET", path, ip=ip)
        self.outcomes.append(outcome)

    async def signin(self, scheduled: float) -> None:
        customer = self.customer()
        outcome, answer = await self.request(
            "signin",
            scheduled,
            "POST",
            f"{API}/auth/login",
            ip=customer.ip,
            json={"email": customer.email, "password": PASSWORD},
        )
        if outcome.ok and isinstance(answer.body, dict):
            customer.token = str(answer.body["access_token"])
        self.outcomes.append(outcome)

    async def order(self, scheduled: float) -> None:
        customer = self.customer()
        a, b = order_quantities(customer.orders)
        customer.orders += 1
        key = str(uuid.uuid4())
        self.intents.append(Intent(key, customer.id, a * PRICE_A + b * PRICE_B))
        outcome, answer = await self.request(
            "order",
            scheduled,
            "POST",
            f"{API}/shops/{self.shop_id}/orders",
            ip=customer.ip,
            token=customer.token,
            key=key,
            expect=201,
            json={
                "lines": [
                    {"product_id": customer.products[0], "quantity": a},
                    {"product_id": customer.products[1], "quantity": b},
                ],
                "shipping_address": {
                    "name": "Ada Lovelace",
                    "line1": "12 Analytical Row",
                    "city": "London",
                    "postal_code": "N1 9GU",
                    "country": "GB",
                },
            },
        )
        if outcome.ok and isinstance(answer.body, dict):
            order_id = str(answer.body["id"])
            self.acks.append(Ack(key, order_id))
            self.payable.append((customer, order_id))
        self.outcomes.append(outcome)

    async def pay(self, scheduled: float) -> None:
        if not self.payable:
            await self.read(scheduled)
            return
        customer, order_id = self.payable.popleft()
        outcome, answer = await self.request(
            "pay",
            scheduled,
            "POST",
            f"{API}/shops/{self.shop_id}/orders/{order_id}/payments",
            ip=customer.ip,
            token=customer.token,
            key=str(uuid.uuid4()),
            expect=201,
            json={"payment_method": "pm_card_visa"},
        )
        if (
            outcome.ok
            and isinstance(answer.body, dict)
            and answer.body.get("status") == ("succeeded")
        ):
            self.paid_acks.append(order_id)
        self.outcomes.append(outcome)

    # -- the open loop ---------------------------------------------------------------------

    def pick(self) -> str:
        roll = self.rng.random() * sum(share for _, share in self.config.mix)
        for kind, share in self.config.mix:
            roll -= share
            if roll < 0:
                return kind
        return self.config.mix[-1][0]

    async def run(self, stop: asyncio.Event) -> None:
        """Send requests at the configured rate until ``stop`` is set, then wait for the
        requests still running (their retries included)."""
        self.t0 = self.loop.time()
        operations = {
            "read": self.read,
            "signin": self.signin,
            "order": self.order,
            "pay": self.pay,
        }
        running: set[asyncio.Task[None]] = set()
        sent = 0
        while not stop.is_set():
            delay = sent / self.config.rate - self.clock()
            if delay > 0:
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                    break
                except TimeoutError:
                    pass
            task = asyncio.create_task(operations[self.pick()](sent / self.config.rate))
            running.add(task)
            task.add_done_callback(running.discard)
            sent += 1
        self.window_s = self.clock()
        if running:
            await asyncio.wait(
                set(running), timeout=self.config.retry_deadline + self.config.timeout + 5
            )
        for task in list(running):  # past every deadline: counted as failed
            task.cancel()
        for _ in range(sent - len(self.outcomes)):
            self.outcomes.append(Outcome("unfinished", self.window_s, ()))
