#!/bin/sh
# Regenerate the gRPC stubs (the agent's, and the mc-proxy admin client's) from proto/ into python/mcfleet/agent/proto/.
# The stubs are committed; tests/unit/test_agent_proto.py fails when they drift.
# Usage: scripts/gen-proto.sh [OUTDIR]   (OUTDIR defaults to python/, for the drift test)
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$ROOT/python}
PY=${PYTHON:-$ROOT/.venv/bin/python}
BIN=$(dirname "$PY")
mkdir -p "$OUT/mcfleet/agent/proto"
# The virtual include path makes the generated imports `from mcfleet.agent.proto import ...`.
cd "$ROOT"
PATH="$BIN:$PATH" "$PY" -m grpc_tools.protoc \
    -Imcfleet/agent/proto=proto \
    --python_out="$OUT" --grpc_python_out="$OUT" \
    --mypy_out="$OUT" --mypy_grpc_out="$OUT" \
    mcfleet/agent/proto/agent.proto mcfleet/agent/proto/health.proto mcfleet/agent/proto/mcproxy.proto
