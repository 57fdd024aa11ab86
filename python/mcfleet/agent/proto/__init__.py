"""Generated gRPC stubs for the agent (scripts/gen-proto.sh). Do not edit by hand."""
