"""GraphQL at /graphql: one schema composed from the domains' ``graphql.py`` (decisions
0145-0147)."""

from storefront.graphql.router import PATH, graphql_router

__all__ = ["PATH", "graphql_router"]
