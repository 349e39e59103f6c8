// Starts GraphiQL against this origin's /graphql (HTTP and WebSocket). Adapted from
// strawberry's GraphiQL page, moved out of the page so its Content-Security-Policy needs no
// inline script; the CSRF cookie (a Django convention) is gone, and headers typed into the
// editor (a bearer token) are not persisted in the browser's storage.
(function () {
  "use strict";

  const EXAMPLE_QUERY = `# Storefront GraphQL
#
# The catalog is public; for everything else add a header below:
#   {"Authorization": "Bearer <access token>"}
#
# Run: Ctrl-Enter. Complete: Ctrl-Space. Schema: the docs button on the left.
#
query FirstProducts($shop: UUID!) {
  products(shopId: $shop, first: 5) {
    edges { cursor node { id name price stock version } }
    pageInfo { hasNextPage endCursor }
  }
}
`;

  // the query and variables travel in the page's URL, so a link can share them
  const parameters = {};
  for (const entry of window.location.search.slice(1).split("&")) {
    const eq = entry.indexOf("=");
    if (eq >= 0) {
      parameters[decodeURIComponent(entry.slice(0, eq))] = decodeURIComponent(
        entry.slice(eq + 1),
      );
    }
  }

  function updateURL(data) {
    Object.assign(parameters, data);
    const newSearch =
      "?" +
      Object.keys(parameters)
        .filter((key) => Boolean(parameters[key]))
        .map((key) => encodeURIComponent(key) + "=" + encodeURIComponent(parameters[key]))
        .join("&");
    history.replaceState(null, null, newSearch);
  }

  const fetchURL = window.location.href.split("?")[0];
  const subscriptionURL = new URL(fetchURL);
  subscriptionURL.protocol = subscriptionURL.protocol === "http:" ? "ws:" : "wss:";
  subscriptionURL.hash = "";

  const fetcher = GraphiQL.createFetcher({
    url: fetchURL,
    subscriptionUrl: subscriptionURL.toString(),
  });

  function StorefrontGraphiQL() {
    const [query, setQuery] = React.useState(parameters.q || EXAMPLE_QUERY);
    const [variables, setVariables] = React.useState(parameters.variables);
    const [headers, setHeaders] = React.useState(parameters.headers);
    const explorerPlugin = GraphiQLPluginExplorer.explorerPlugin();

    return React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultEditorToolsVisibility: true,
      plugins: [explorerPlugin],
      query: query,
      variables: variables,
      headers: headers,
      onEditQuery: (value) => {
        setQuery(value);
        updateURL({ q: value });
      },
      onEditVariables: (value) => {
        setVariables(value);
        updateURL({ variables: value });
      },
      onEditHeaders: setHeaders,
      inputValueDeprecation: true,
      isHeadersEditorEnabled: true,
      shouldPersistHeaders: false,
    });
  }

  ReactDOM.createRoot(document.getElementById("graphiql")).render(
    React.createElement(StorefrontGraphiQL),
  );
})();
