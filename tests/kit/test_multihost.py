"""Addresses with several hosts: Sentinel URLs and AMQP node lists (decisions 0176, 0177)."""

from __future__ import annotations

import pytest

from storefront.kit.multihost import (
    SentinelAddress,
    amqp_nodes,
    is_sentinel_url,
    parse_sentinel_url,
    url_hosts,
)


def test_a_sentinel_url_names_the_sentinels_the_service_and_the_database() -> None:
    url = "redis+sentinel://:s%40cret@10.0.0.1:26381,10.0.0.2:26382,[::1]/storefront/3"
    assert is_sentinel_url(url)
    assert parse_sentinel_url(url) == SentinelAddress(
        sentinels=(("10.0.0.1", 26381), ("10.0.0.2", 26382), ("::1", 26379)),
        service="storefront",
        db=3,
        password="s@cret",
    )


def test_sentinel_url_options() -> None:
    address = parse_sentinel_url("rediss+sentinel://app:pw@h1:1,h2:2/main?sentinel_password=sp")
    assert address.tls
    assert (address.username, address.password, address.sentinel_password) == ("app", "pw", "sp")
    assert address.db == 0


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://h1:1,h2:2",  # no service
        "redis+sentinel://h1:1,h2:2/",  # no service
        "redis+sentinel://h1:1,,h2:2/s",  # an empty host
        "redis+sentinel://h1:99999/s",  # not a port
        "redis+sentinel://h1:1/s/x",  # not a database number
        "redis+sentinel://h1:1/s?master=x",  # unknown option
    ],
)
def test_unusable_sentinel_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message names the entry
        parse_sentinel_url(url)


def test_a_plain_redis_url_is_not_a_sentinel_one() -> None:
    assert not is_sentinel_url("redis://127.0.0.1:6379/0")


def test_an_amqp_node_list_gives_one_url_per_node() -> None:
    url = "amqp://user:p%40ss@127.0.0.1:5681,127.0.0.1:5682,rabbit-c/shop?heartbeat=10"
    assert amqp_nodes(url) == (
        "amqp://user:p%40ss@127.0.0.1:5681/shop?heartbeat=10",
        "amqp://user:p%40ss@127.0.0.1:5682/shop?heartbeat=10",
        "amqp://user:p%40ss@rabbit-c:5672/shop?heartbeat=10",
    )


def test_a_one_node_amqp_url_is_kept_as_it_is() -> None:
    assert amqp_nodes("amqp://guest:guest@127.0.0.1:5672/") == (
        "amqp://guest:guest@127.0.0.1:5672/",
    )


def test_unusable_amqp_node_lists_are_refused() -> None:
    with pytest.raises(ValueError, match="empty host"):
        amqp_nodes("amqp://a:1,,b:2/")
    with pytest.raises(ValueError, match="not an AMQP scheme"):
        amqp_nodes("redis://a:1,b:2/")


def test_url_hosts_for_a_reachability_check() -> None:
    ports = {"amqp": 5672, "redis": 6379}
    assert url_hosts("amqp://u:p@a:1,b/", ports) == (("a", 1), ("b", 5672))
    assert url_hosts("redis+sentinel://s1:26381,s2/x", ports) == (("s1", 26381), ("s2", 26379))
    assert url_hosts("redis://r/0", ports) == (("r", 6379),)


def test_settings_refuse_an_unusable_multihost_url() -> None:
    from pydantic import ValidationError

    from storefront.settings import Settings

    with pytest.raises(ValidationError, match="service"):
        Settings(redis_url="redis+sentinel://h1:1,h2:2")
    with pytest.raises(ValidationError, match="empty host"):
        Settings(broker_url="amqp://a:1,,b:2/")
    with pytest.raises(ValidationError, match="empty host"):
        Settings(events={"broker_url": "amqp://a:1,,b:2/"})
    ok = Settings(redis_url="redis+sentinel://h1:1,h2:2/storefront")
    assert ok.redis_url == "redis+sentinel://h1:1,h2:2/storefront"
