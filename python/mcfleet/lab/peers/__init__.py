"""The lab's peers: Knot (DNS), Pebble (ACME), Caddy (L7 routes), HAProxy (L4 SNI routes)."""
