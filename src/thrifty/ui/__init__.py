"""The dashboard at ``/ui``: server-rendered pages, JSON endpoints that aggregate in SQL over the log
store (with hourly/daily roll-ups), and the vendored charts and node-graph scripts."""
