"""mcfleet-agent: the node daemon (gRPC on a unix socket; podman containers by boot stage).

Modules: `main` (the command), `server` (gRPC services), `client` (what the orchestrator
uses), `reconcile` (desired services → podman, stage by stage), `registry` (SQLite of what
should run), `spec` (service → container specs), `ports`, `health`, `podman_ops`, `facts`,
`events`, `grpc_words` (what grpc says when a call reached no agent); `proto/` holds the generated
stubs (scripts/gen-proto.sh).
"""
