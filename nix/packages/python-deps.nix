# The Python libraries mcfleet imports (pyproject.toml's dependencies), for the
# package (mcfleet.nix) and the development shell (dev-shell.nix).
ps:
with ps;
[
  pydantic
  jsonschema
  typer
  rich
  asyncssh
  cryptography
  dnspython
  dnslib
  acme
  josepy
  grpcio
  protobuf
  podman
  requests
  # the wheel requires it (mcfleet.bundle builds the Debian agent PEX); without it
  # pythonRuntimeDepsCheckHook fails the build
  pex
  # age encryption of the fleet's secrets (rules and `mcfleet secret` import it)
  pyrage
]
