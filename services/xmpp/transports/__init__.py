"""Thin I/O adapters that feed the sans-I/O session: TCP c2s, HTTP (WebSocket, BOSH, admin)."""
