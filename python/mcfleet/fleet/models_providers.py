"""fleet.json `providers`: which DNS, cert and route backend the fleet uses, and how to reach it.

Secrets are never values here: only the paths of the files that hold them.
"""

# Annotations are evaluated when each class is created (no `from __future__ import annotations`):
# from strings, pydantic would compile every field's annotation again to build the model.

from typing import Annotated, Literal, get_args

from pydantic import Field

from mcfleet.fleet.models_base import Address, Model, Port

# Files read on the operator's machine (fleet/local_paths.py makes them absolute).
MAX_TTL = 2**31 - 1  # RFC 2181: a TTL is an unsigned 32-bit number whose top bit is zero
TTL = "seconds resolvers may keep the records; at most 2147483647, as RFC 2181 allows"
TOKEN_FILE = "a file holding the MCIAS token; on this machine: relative to the fleet folder, absolute, or ~/…"
CA_FILE = (
    "the CA bundle that signs the server's own TLS certificate; on this machine: relative to the fleet folder, "
    "absolute, or ~/…"
)


class Rfc2136Provider(Model):
    """Standard DNS backend: RFC 2136 dynamic update signed with TSIG (Knot, BIND)."""

    kind: Literal["rfc2136"]
    server: Address
    port: Port = 53
    key_name: str
    key_file: str = Field(
        description="a file holding the TSIG secret (base64), never the secret itself; on this machine: relative "
        "to the fleet folder, absolute, or ~/…"
    )
    algorithm: Literal["hmac-sha256", "hmac-sha512"] = "hmac-sha256"
    ttl: int = Field(default=60, ge=1, le=MAX_TTL, description=TTL)


class McnsProvider(Model):
    """Seed-native DNS backend: MCNS REST `/v1/zones/{zone}/records` with an MCIAS token."""

    kind: Literal["mcns"]
    url: str
    token_file: str = Field(description=TOKEN_FILE)
    ca_file: str | None = Field(default=None, description=CA_FILE)
    ttl: int = Field(default=300, ge=1, le=MAX_TTL, description=TTL)


class AcmeProvider(Model):
    """Standard cert backend: RFC 8555 ACME (Pebble in the lab)."""

    kind: Literal["acme"]
    directory: str
    account_key_file: str = Field(
        description="the ACME account's private key (made on first use); on this machine: relative to the fleet "
        "folder, absolute, or ~/…"
    )
    ca_file: str | None = Field(default=None, description=CA_FILE)
    email: str | None = None


class MetacryptProvider(Model):
    """Seed-native cert backend: Metacrypt `POST /v1/engine/request` with an MCIAS token."""

    kind: Literal["metacrypt"]
    url: str
    token_file: str = Field(description=TOKEN_FILE)
    ca_file: str | None = Field(default=None, description=CA_FILE)
    mount: str = "pki"


class CaddyProvider(Model):
    """Standard L7 route backend: Caddy's admin API."""

    kind: Literal["caddy"]
    admin_url: str = Field(
        default="http://127.0.0.1:2019",
        description="the admin API: an http URL, or `unix:<path>` of a socket on the proxy node (reached over SSH)",
    )
    server: str = "edge"
    user: str = Field(default="root", description="the account the proxy runs as: owner of the private keys")


class HaproxyProvider(Model):
    """Standard L4 route backend: HAProxy runtime API (SNI passthrough on every listener port)."""

    kind: Literal["haproxy"]
    admin_socket: str = Field(description="the runtime API socket on the proxy node (reached over SSH)")
    map_file: str = Field(
        description="the map file on the proxy node that HAProxy's frontend reads, one route a line "
        "('<listener>/<sni-name> <address>:<port>'); mcfleet changes the running map and rewrites this file"
    )


class McProxyProvider(Model):
    """Seed-native route backend: mc-proxy gRPC admin API on a unix socket."""

    kind: Literal["mc-proxy"]
    socket: str = Field(default="/srv/mc-proxy/mc-proxy.sock", description="the admin socket on the proxy node")
    user: str = Field(default="mc-proxy", description="the account mc-proxy runs as: owner of the private keys")


DnsProvider = Annotated[Rfc2136Provider | McnsProvider, Field(discriminator="kind")]
CertProvider = Annotated[AcmeProvider | MetacryptProvider, Field(discriminator="kind")]
RouteProvider = Annotated[CaddyProvider | HaproxyProvider | McProxyProvider, Field(discriminator="kind")]


def _kinds(*unions: object) -> frozenset[str]:
    members = (m for union in unions for m in get_args(get_args(union)[0]))
    return frozenset(get_args(m.model_fields["kind"].annotation)[0] for m in members)


# The `kind` tags of every provider: pydantic puts a tagged union's tag in an error's location, where
# it is no part of the file's JSON pointer.
PROVIDER_KINDS = _kinds(DnsProvider, CertProvider, RouteProvider)


class Providers(Model):
    dns: DnsProvider | None = None
    cert: CertProvider | None = None
    route: RouteProvider | None = None
    route_l4: RouteProvider | None = Field(
        default=None, description="a separate backend for l4 routes (e.g. haproxy beside caddy)"
    )
