"""Pure parsers: the facts script's output (see observe.script) -> `Facts`.

Every function here takes text and returns data; no I/O.  The data-driven
cases in tests/data/facts/parse/ hold each value as readable text; the test
frames them as the script does and compares what `parse_facts` returns.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mcfleet.observe.certs import fingerprint, key_path, parse_cert
from mcfleet.observe.facts import (
    Account,
    AgentFacts,
    CertFacts,
    ContainerFacts,
    DirFacts,
    Facts,
    Group,
    IdRangeFact,
    RouteMapFacts,
)
from mcfleet.observe.files import parse_files
from mcfleet.observe.hostlevel import host_level_from
from mcfleet.observe.manifest import Manifest, ManifestCorrupt, manifest_path
from mcfleet.observe.manifest import parse_manifest as parse_store_manifest
from mcfleet.observe.script import CERT, CERT_CAP, CERT_FILES_CAP, END, MAGIC, PROBE_NAME, VALUE_CAP


class FactsRefused(ValueError):
    """The facts output breaks the wire format (forged, duplicated or oversized records): the host fails."""

    def __init__(self, message: str, probe: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.probe = probe


@dataclass
class FramedOutput:
    """The records of one facts run, decoded (see observe.script for the format)."""

    values: dict[str, bytes] = field(default_factory=dict)
    certs: list[tuple[str, bytes]] = field(default_factory=list)
    complete: bool = False

    def text(self, name: str) -> str:
        return self.values.get(name, b"").decode("utf-8", "replace")


def encode_framed(values: dict[str, str | bytes], certs: Sequence[tuple[str, bytes]] = (), *, end: bool = True) -> str:
    """What the facts script prints for these values (tests, fuzzing and recorded cases use it)."""

    def b64(data: str | bytes) -> str:
        return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()

    lines = [MAGIC, *(f"{k} {b64(v)}" for k, v in values.items())]
    lines += [f"{CERT} {b64(path)} {b64(body)}" for path, body in certs]
    return "\n".join([*lines, *([END] if end else [])]) + "\n"


def _b64(token: str, what: str) -> bytes:
    try:
        return base64.b64decode(token, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise FactsRefused(f"the facts output has a malformed {what} record (not base64)") from exc


def read_framed(output: str) -> FramedOutput:
    """Decode the records after the `mcfleet-facts 2` line; refuse anything the script cannot have printed.

    Lines before the first record line are login noise (a shell rc file's echo) and ignored.
    Raises FactsRefused on a duplicate value, an unknown record, text after `end`, or a value
    over its cap (a cut value must not pass for the whole file).
    """
    framed = FramedOutput()
    lines = output.split("\n")[:-1]  # the last piece is "" or a line cut short (an incomplete run)
    try:
        first = lines.index(MAGIC)
    except ValueError:
        return framed  # never started: the caller reports the script as stopped early
    for line in lines[first + 1 :]:
        if not line:
            continue
        if framed.complete:
            raise FactsRefused("the facts output continues after its end record")
        if line == END:
            framed.complete = True
            continue
        parts = line.split(" ")
        if parts[0] == CERT and len(parts) == 3:
            path = _b64(parts[1], "certificate").decode("utf-8", "replace")
            framed.certs.append((path, _b64(parts[2], "certificate")))
        elif len(parts) == 2 and PROBE_NAME.match(parts[0]):
            name = parts[0]
            if name in framed.values:
                raise FactsRefused(f"the facts output has the value {name!r} twice", probe=name)
            framed.values[name] = _b64(parts[1], name)
            if len(framed.values[name]) > VALUE_CAP:
                raise FactsRefused(f"value {name!r} is larger than {VALUE_CAP // 1024} KiB", probe=name)
        else:
            raise FactsRefused(f"the facts output has a line the facts script cannot print: {line[:60]!r}")
    return framed


def parse_os_release(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.startswith("#"):
            values[key.strip()] = value.strip().strip("\"'")
    return values


def parse_passwd(text: str) -> list[Account]:
    """`getent passwd` lines; duplicates (a name and its UID both asked) collapse."""
    seen: dict[str, Account] = {}
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) >= 7 and parts[2].isdecimal() and parts[3].isdecimal():
            seen.setdefault(
                parts[0], Account(name=parts[0], uid=int(parts[2]), gid=int(parts[3]), home=parts[5], shell=parts[6])
            )
    return list(seen.values())


def parse_passwd_file(text: str) -> list[Account]:
    """/etc/passwd lines as they are: a name or UID twice stays twice (that is what this read is for)."""
    found = []
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) >= 7 and parts[2].isdecimal() and parts[3].isdecimal():
            found.append(Account(name=parts[0], uid=int(parts[2]), gid=int(parts[3]), home=parts[5], shell=parts[6]))
    return found


def parse_group_file(text: str) -> list[Group]:
    return [
        Group(name=parts[0], gid=int(parts[2]))
        for parts in (line.split(":") for line in text.splitlines())
        if len(parts) >= 3 and parts[2].isdecimal()
    ]


def parse_group(text: str) -> list[Group]:
    seen: dict[str, Group] = {}
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) >= 3 and parts[2].isdecimal():
            seen.setdefault(parts[0], Group(name=parts[0], gid=int(parts[2])))
    return list(seen.values())


def parse_subids(text: str) -> dict[str, list[IdRangeFact]]:
    ranges: dict[str, list[IdRangeFact]] = {}
    for line in text.splitlines():
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[1].isdecimal() and parts[2].isdecimal():
            ranges.setdefault(parts[0], []).append(IdRangeFact(start=int(parts[1]), count=int(parts[2])))
    return ranges


def parse_resolv(text: str) -> list[str]:
    return [line.split()[1] for line in text.splitlines() if line.startswith("nameserver") and len(line.split()) > 1]


def _fields(text: str) -> dict[str, str]:
    """`key value` lines; the first line of a key counts (each probe prints each key once)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key:
            fields.setdefault(key, value.strip())
    return fields


def parse_agent(path: str, agent_text: str, unit_text: str) -> AgentFacts:
    fields, unit = _fields(agent_text), _fields(unit_text)
    sha = fields.get("sha256") or None
    systemd = False if "no-systemd" in unit else (True if "active" in unit else None)
    return AgentFacts(
        path=path,
        present=sha is not None,
        sha256=sha,
        version=fields.get("version") or None,
        unit_active=unit.get("active") or None,
        unit_enabled=unit.get("enabled") or None,
        unit_sha256=unit.get("unitsha") or None,
        unit_dropins=unit["dropins"].split() if "dropins" in unit else None,
        systemd=systemd,
    )


def parse_dirs(text: str) -> list[DirFacts]:
    """`<path> <owner> <group> <mode>` per folder, `<path> -` for one that does not exist."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1] == "-":
            out.append(DirFacts(path=parts[0], present=False))
        elif len(parts) == 4:
            out.append(DirFacts(path=parts[0], owner=parts[1], group=parts[2], mode=parts[3]))
    return out


def parse_manifest(text: str, where: str) -> tuple[Manifest | None, str | None]:
    """The manifest, or why it is corrupt (the plan turns that into a refusal)."""
    try:
        return parse_store_manifest(text, where=where), None
    except ManifestCorrupt as exc:
        return None, exc.message


def parse_certs(files: list[tuple[str, bytes]]) -> list[CertFacts]:
    seen: dict[str, CertFacts] = {}
    for path, body in files:
        if path in seen:
            raise FactsRefused(f"the facts output has the certificate {path} twice", probe=CERT)
        if len(body) > CERT_CAP:  # cut on the node: a certificate of that size is not one mcfleet issued
            seen[path] = CertFacts(path=path, error=f"larger than {CERT_CAP // 1024} KiB: not read")
        else:
            seen[path] = parse_cert(path, body.decode("utf-8", "replace"))
    return list(seen.values())


def parse_containers(text: str) -> list[ContainerFacts] | None:
    text = text.strip()
    if text == "absent" or not text:
        return None
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError:
        return None
    out = []
    for item in data if isinstance(data, list) else []:
        if not isinstance(item, dict):  # podman's JSON is a list of objects; anything else is noise
            continue
        names = item.get("Names") or [item.get("Name", "")]
        labels = item.get("Labels")
        out.append(
            ContainerFacts(
                name=str(names[0] if isinstance(names, list) and names else names),
                image=str(item.get("Image", "")),
                state=str(item.get("State", "")),
                labels={str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {},
            )
        )
    return sorted(out, key=lambda c: c.name)


ADDRESSES_CAP = 4096  # addresses kept per node (more is not a machine mcfleet manages)


def parse_addresses(text: str) -> list[str] | None:
    """The node's addresses from `ip -o addr show` ("10.0.0.5/24") or `hostname -I`; None when not asked,
    when the node binds any address (`nonlocal`: ip_nonlocal_bind) or when nothing came back (no tool:
    unknown, never "no address").  Only valid IP addresses count."""
    from mcfleet.fleet.routes import canonical_ip

    if text.strip() in ("", "absent", "nonlocal"):
        return None
    return sorted({a for token in text.split()[:ADDRESSES_CAP] if (a := canonical_ip(token)) is not None}) or None


LISTENING_CAP = 4096  # listening sockets kept per node (the script sends only those on the services' ports)


def parse_listening(text: str) -> list[tuple[str, str, int]] | None:
    """`<tcp|udp> <hex address>:<hex port>` lines (the kernel's /proc/net/{tcp,udp}[6] local_address) as
    (protocol, address, port); None when not asked.  The kernel prints each 32-bit word of the address
    in the node's byte order: little-endian on amd64 and arm64, the machines mcfleet manages."""
    if text.strip() == "absent":
        return None
    out: set[tuple[str, str, int]] = set()
    for line in text.splitlines()[:LISTENING_CAP]:
        proto, _, local = line.strip().partition(" ")
        hex_address, _, hex_port = local.partition(":")
        if proto not in ("tcp", "udp") or len(hex_address) not in (8, 32):
            continue
        try:
            raw = b"".join(bytes.fromhex(hex_address[i : i + 8])[::-1] for i in range(0, len(hex_address), 8))
            address = str(ipaddress.ip_address(raw))
            port = int(hex_port, 16)
        except ValueError:
            continue
        out.add((proto, address, port))
    return sorted(out)


def parse_route_map(text: str, path: str) -> RouteMapFacts | None:
    """`absent` (not asked), `missing`, or `map` then the file: `<key> <value>` lines, as HAProxy reads
    them (blank lines and `#` comments skipped, the value is the rest of the line)."""
    head, _, body = text.partition("\n")
    if head.strip() == "missing":
        return RouteMapFacts(path=path, missing=True)
    if head.strip() != "map":
        return None
    entries: dict[str, str] = {}
    for line in body.splitlines():
        words = line.split(None, 1)
        if words and not words[0].startswith("#"):
            entries[words[0]] = words[1].strip() if len(words) > 1 else ""
    return RouteMapFacts(path=path, entries=entries)


# sha256 of nothing: what the keypubs probe reports for a key openssl could not load
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def parse_key_pubs(text: str) -> dict[str, str]:
    """Key path -> sha256 of its public key ('' when openssl could not load it), from `<sha256> <path>`
    lines (none when the node has no openssl: `absent`)."""
    pubs: dict[str, str] = {}
    for line in text.splitlines()[:CERT_FILES_CAP]:
        digest, _, path = line.partition(" ")
        if re.fullmatch(r"[0-9a-f]{64}", digest) and path:
            pubs[path] = "" if digest == EMPTY_SHA256 else digest
    return pubs


def parse_served(text: str) -> dict[str, str] | None:
    """Route key -> fingerprint of the certificate its handshake got ('' for none), from `<key> <base64 PEM>`
    lines; None when not asked or the node has no openssl (`absent`)."""
    if not text or text.strip() == "absent":
        return None
    out: dict[str, str] = {}
    for line in text.splitlines()[:CERT_FILES_CAP]:
        key, _, encoded = line.partition(" ")
        try:
            pem = base64.b64decode(encoded.strip(), validate=True).decode("ascii")
        except (binascii.Error, UnicodeDecodeError):
            continue
        if key:
            out[key] = fingerprint(pem) if pem else ""
    return out


def with_cert_keys(certs: list[CertFacts], text: str, pubs_text: str = "") -> list[CertFacts]:
    """Each certificate with its key's owner and mode, from `<uid> <user> <mode> <file type>:<path>` lines
    (a key that is a link or anything but a plain file counts as missing), and with the sha256 of the key's
    public key (`parse_key_pubs`) when the node could tell."""
    pubs = parse_key_pubs(pubs_text)
    keys: dict[str, tuple[int, str, str] | None] = {}
    for line in text.splitlines()[:CERT_FILES_CAP]:
        head, _, path = line.partition(":")
        parts = head.split(" ", 3)
        if len(parts) == 4 and parts[0].isdecimal() and re.fullmatch(r"[0-7]{1,4}", parts[2]) and path:
            keys[path] = (int(parts[0]), parts[1], parts[2]) if parts[3] == "regular file" else None
    out = []
    for cert in certs:
        key = keys.get(key_path(cert.path))
        if key is None:
            out.append(cert.model_copy(update={"key_missing": True}))
        else:
            update: dict[str, object] = {"key_uid": key[0], "key_user": key[1], "key_mode": key[2]}
            out.append(cert.model_copy(update={**update, "key_pub_sha256": pubs.get(key_path(cert.path))}))
    return out


def parse_facts(host: str, output: str, *, agent_path: str, address: str | None = None, route_map: str = "") -> Facts:
    """Facts from the script's output; raises FactsRefused when the output breaks the format."""
    return facts_from(host, read_framed(output), agent_path=agent_path, address=address, route_map=route_map)


def facts_from(
    host: str, v: FramedOutput, *, agent_path: str, address: str | None = None, route_map: str = ""
) -> Facts:
    """`route_map`: the HAProxy map file the script was asked to read (its path, for the plan's reasons)."""
    osr = parse_os_release(v.text("os"))
    uname = v.text("uname").splitlines()
    manifest, manifest_error = parse_manifest(v.text("manifest"), manifest_path())
    euid = v.text("euid").strip()
    return Facts(
        host=host,
        address=address,
        os_id=osr.get("ID"),
        os_version=osr.get("VERSION_ID"),
        os_pretty=osr.get("PRETTY_NAME"),
        arch_raw=uname[0].strip() if uname else None,
        hostname=uname[1].strip() if len(uname) > 1 else None,
        euid=int(euid) if euid.isdecimal() else None,
        accounts=sorted(parse_passwd(v.text("passwd")), key=lambda a: a.name),
        groups=sorted(parse_group(v.text("group")), key=lambda g: g.name),
        passwd_file=parse_passwd_file(v.text("passwd-file")),
        group_file=parse_group_file(v.text("group-file")),
        subuid=parse_subids(v.text("subuid")),
        subgid=parse_subids(v.text("subgid")),
        resolvers=parse_resolv(v.text("resolv")),
        host_level=host_level_from(v),
        agent=parse_agent(agent_path, v.text("agent"), v.text("unit")),
        nixos_system=v.text("nixos").strip() or None,
        dirs=parse_dirs(v.text("dirs")) if "dirs" in v.values else None,
        files=parse_files(v.text("files")) if "files" in v.values else None,
        manifest=manifest,
        manifest_error=manifest_error,
        certs=with_cert_keys(parse_certs(v.certs), v.text("certkeys"), v.text("keypubs"))
        if "certkeys" in v.values
        else parse_certs(v.certs),
        containers=parse_containers(v.text("containers")),
        addresses=parse_addresses(v.text("addrs")) if "addrs" in v.values else None,
        listening=parse_listening(v.text("listen")) if "listen" in v.values else None,
        route_map=parse_route_map(v.text("routemap"), route_map) if route_map else None,
        served_certs=parse_served(v.text("served")),
    )
