"""The agent bundle for Debian nodes: one multi-arch PEX (x86_64 + aarch64), content-addressed.

Build it with `python -m mcfleet.bundle` or `mcfleet.bundle.build.build_agent_bundle()`.
"""
