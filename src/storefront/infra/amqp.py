"""AMQP connections to a RabbitMQ cluster (decision 0177).

``amqp://user:password@h1:5681,h2:5682,h3:5683/vhost`` names the nodes of one cluster. The job
broker (taskiq-aio-pika) and the events' broker (FastStream) both open aio-pika robust
connections; :func:`cluster_options` gives them the URL of the first node and a connection
class that, on every (re)connection attempt, tries the nodes in turn from the one it was last
on: the first that answers is used, and when that node dies the connection moves on to the
next one that answers (its channels, consumers and declarations restored by aio-pika as after
any reconnection). One-node URLs are left to aio-pika as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

from aio_pika import RobustConnection
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from yarl import URL

from storefront.kit.multihost import Host, amqp_hosts, amqp_nodes

# aio-pika's robust connection makes each attempt in this (private) method; the pinned
# version's, checked by tests/infra/test_amqp_cluster.py
_CONNECT_TRANSPORT = "_RobustConnection__connect_transport"


class ClusterConnection(RobustConnection):
    """aio-pika's robust connection over the nodes of a cluster: each attempt to connect
    tries every node once, starting from the current one."""

    def __init__(self, url: URL, *args: Any, hosts: Sequence[Host], **kwargs: Any) -> None:
        super().__init__(url, *args, **kwargs)
        # the same credentials, virtual host and options on every node
        base = URL(url)
        self.nodes = tuple(base.with_host(host).with_port(port) for host, port in hosts)
        self.node = 0  # where the last attempt connected, or is to start

    async def _RobustConnection__connect_transport(self) -> None:
        connect = getattr(super(), _CONNECT_TRANSPORT)
        failure: BaseException = ConnectionError("no node to connect to")
        for _ in self.nodes:
            self.url = self.nodes[self.node]
            try:
                await connect()
            except CONNECTION_EXCEPTIONS as exc:
                failure = exc
                self.node = (self.node + 1) % len(self.nodes)
            else:
                return
        raise failure


def cluster_options(url: str) -> tuple[str, dict[str, Any]]:
    """The URL to give the client library and the extra ``connect_robust`` options for
    ``url``: for a node list, the first node's URL and the connection class that moves
    between the nodes; otherwise ``url`` and nothing."""
    nodes = amqp_nodes(url)
    if len(nodes) == 1:
        return nodes[0], {}
    return nodes[0], {"connection_class": partial(ClusterConnection, hosts=amqp_hosts(url))}
