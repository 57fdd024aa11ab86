"""Pure parsers: the facts script's output (see observe.script) -> `Facts`.

Every function here takes text and returns data; no I/O.  The data-driven
cases in tests/data/facts/parse/ feed recorded script output through
`parse_facts` and compare the result.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from mcfleet.observe.certs import parse_cert
from mcfleet.observe.facts import (
    Account,
    AgentFacts,
    CertFacts,
    ContainerFacts,
    Facts,
    Group,
    IdRangeFact,
)
from mcfleet.observe.manifest import Manifest
from mcfleet.observe.script import FILE, SECTION


def split_sections(output: str) -> dict[str, str]:
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in output.splitlines():
        if line.startswith(SECTION):
            current = sections.setdefault(line[len(SECTION) :].strip(), [])
        elif current is not None:
            current.append(line)
    return {k: "\n".join(v).strip("\n") for k, v in sections.items()}


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
        if len(parts) >= 7 and parts[2].isdigit() and parts[3].isdigit():
            seen.setdefault(
                parts[0], Account(name=parts[0], uid=int(parts[2]), gid=int(parts[3]), home=parts[5], shell=parts[6])
            )
    return list(seen.values())


def parse_group(text: str) -> list[Group]:
    seen: dict[str, Group] = {}
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) >= 3 and parts[2].isdigit():
            seen.setdefault(parts[0], Group(name=parts[0], gid=int(parts[2])))
    return list(seen.values())


def parse_subids(text: str) -> dict[str, list[IdRangeFact]]:
    ranges: dict[str, list[IdRangeFact]] = {}
    for line in text.splitlines():
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            ranges.setdefault(parts[0], []).append(IdRangeFact(start=int(parts[1]), count=int(parts[2])))
    return ranges


def parse_resolv(text: str) -> list[str]:
    return [line.split()[1] for line in text.splitlines() if line.startswith("nameserver") and len(line.split()) > 1]


def parse_agent(path: str, agent_text: str, unit_text: str) -> AgentFacts:
    fields: dict[str, str] = {}
    for line in (agent_text + "\n" + unit_text).splitlines():
        key, _, value = line.strip().partition(" ")
        if key:
            fields[key] = value.strip()
    sha = fields.get("sha256") or None
    systemd = False if "no-systemd" in fields else (True if "active" in fields else None)
    return AgentFacts(
        path=path,
        present=sha is not None,
        sha256=sha,
        version=fields.get("version") or None,
        unit_active=fields.get("active") or None,
        unit_enabled=fields.get("enabled") or None,
        systemd=systemd,
    )


def parse_manifest(text: str) -> tuple[Manifest | None, str | None]:
    if not text.strip():
        return None, None
    try:
        return Manifest.model_validate(json.loads(text)), None
    except (json.JSONDecodeError, ValidationError) as exc:
        first = str(exc).splitlines()[0]
        return None, f"unreadable manifest: {first}"


def parse_certs(text: str) -> list[CertFacts]:
    found: list[CertFacts] = []
    path: str | None = None
    body: list[str] = []
    for line in [*text.splitlines(), FILE]:
        if line.startswith(FILE):
            if path is not None:
                found.append(parse_cert(path, "\n".join(body)))
            path, body = line[len(FILE) :].strip() or None, []
        else:
            body.append(line)
    return found


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


def parse_facts(host: str, output: str, *, agent_path: str, address: str | None = None) -> Facts:
    s = split_sections(output)
    osr = parse_os_release(s.get("os", ""))
    uname = s.get("uname", "").splitlines()
    manifest, manifest_error = parse_manifest(s.get("manifest", ""))
    euid = s.get("euid", "").strip()
    return Facts(
        host=host,
        address=address,
        os_id=osr.get("ID"),
        os_version=osr.get("VERSION_ID"),
        os_pretty=osr.get("PRETTY_NAME"),
        arch_raw=uname[0].strip() if uname else None,
        hostname=uname[1].strip() if len(uname) > 1 else None,
        euid=int(euid) if euid.isdigit() else None,
        accounts=sorted(parse_passwd(s.get("passwd", "")), key=lambda a: a.name),
        groups=sorted(parse_group(s.get("group", "")), key=lambda g: g.name),
        subuid=parse_subids(s.get("subuid", "")),
        subgid=parse_subids(s.get("subgid", "")),
        resolvers=parse_resolv(s.get("resolv", "")),
        agent=parse_agent(agent_path, s.get("agent", ""), s.get("unit", "")),
        nixos_system=s.get("nixos", "").strip() or None,
        manifest=manifest,
        manifest_error=manifest_error,
        certs=parse_certs(s.get("certs", "")),
        containers=parse_containers(s.get("containers", "")),
    )
