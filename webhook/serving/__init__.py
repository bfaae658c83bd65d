"""Serving: the HTTP/1.1 server, its processes, TLS, routes, logs, metrics and hot reload."""
