"""The files a service declares (`files` in its service file), as they should be on its node.

Each file lands at `/srv/<svc>/<path>` with a numeric owner: the agent's user (`mcp`), or a
uid inside the service's rootless containers, mapped the way rootless podman maps it
(container uid 0 is the agent user itself, uid N > 0 is the agent user's subuid start + N - 1;
groups the same through the subgid range).  The content comes from a file in the fleet
repository; a template's `{{ name }}` placeholders are filled from `template_values`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from mcfleet.errors import InputError
from mcfleet.fleet.load import HostEntry, LoadedFleet
from mcfleet.fleet.models import Service, ServiceFile
from mcfleet.fleet.source_file import SourceUnusable, read_source_file

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_./-]+)\s*\}\}")
SOURCE_CAP = 256 * 1024  # bytes of one declared file; larger content belongs in a volume, not the plan


@dataclass(frozen=True)
class DesiredFile:
    """A file a service declares, as it should be on the node."""

    path: str  # absolute, /srv/<svc>/<name>
    service: str
    uid: int
    gid: int
    mode: str  # octal, 4 digits
    sha256: str  # of the content; "" for a secret (a hash of a short secret would give it away)
    content: str | None = field(repr=False, compare=False)  # None: a secret that could not be decrypted
    secret: str | None = None  # the secret's name: the plan never shows its content, diff or hash
    error: str | None = None  # why a secret's content is not known (the plan refuses its file)
    data: bytes | None = field(default=None, repr=False, compare=False)  # a binary file's bytes (content None)
    # a secret: the sha256 of its encrypted file (secrets/NAME.age), known without an identity; it changes
    # with the value (`secret set`) and with a rekey
    sealed: str | None = None

    @property
    def owner(self) -> str:
        return f"{self.uid}:{self.gid}"


def service_dir(service: str) -> str:
    return f"/srv/{service}"


def template_values(
    loaded: LoadedFleet, entry: HostEntry, svc: Service, ports: dict[str, int], address: str
) -> dict[str, str]:
    """The values a template may use; `ports` is the service's '<component>/<route>' -> host port."""
    zone = loaded.fleet.zone if loaded.fleet else None
    hostnames = [r.hostname or (f"{svc.name}.{zone}" if zone else "") for c in svc.components for r in c.routes]
    values = {"host": entry.host.name, "address": address, "service": svc.name, "zone": zone or ""}
    values["hostname"] = next((h for h in hostnames if h), f"{svc.name}.{zone}" if zone else "")
    values.update({f"port.{key}": str(port) for key, port in ports.items()})
    return values


def fill(text: str, values: dict[str, str], where: str) -> str:
    """`text` with every `{{ name }}` replaced; an unknown name is an error naming the file."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            known = ", ".join(sorted(values))
            raise InputError(f"unknown template value {{{{ {name} }}}}", location=where, hint=f"known: {known}")
        return values[name]

    return PLACEHOLDER.sub(one, text)


def _owner(entry: HostEntry, want: ServiceFile, mcp_uid: int, mcp_gid: int, where: str) -> tuple[int, int]:
    if want.owner in {"mcp", 0}:
        return mcp_uid, mcp_gid
    user = entry.host.users.get(entry.host.agent.user)
    if user is None or user.subuid is None or user.subgid is None:
        raise InputError(
            f"file {want.path}: owner {want.owner} is a container uid, but {entry.host.agent.user} has no "
            "subuid/subgid range on this host",
            location=where,
            hint=f"set users.{entry.host.agent.user}.subuid and subgid in host.json, or use owner 'mcp'",
        )
    n = int(want.owner)
    if n > user.subuid.count or n > user.subgid.count:
        raise InputError(f"file {want.path}: owner {n} is outside the subuid/subgid range", location=where)
    return user.subuid.start + n - 1, user.subgid.start + n - 1


def service_files(
    loaded: LoadedFleet,
    entry: HostEntry,
    *,
    index: int,
    ports: dict[str, int],
    address: str,
    mcp_ids: tuple[int, int],
) -> list[DesiredFile]:
    """Service `index` of `entry`'s files, rendered.  A missing or unreadable source is an InputError."""
    svc = entry.services[index]
    where = loaded.rel(entry.service_path(index))
    values = template_values(loaded, entry, svc, ports, address)
    out = []
    for i, want in enumerate(svc.files):
        uid, gid = _owner(entry, want, *mcp_ids, f"{where}#/files/{i}/owner")
        path = f"{service_dir(svc.name)}/{want.path}"
        mode = want.mode.zfill(4)
        if want.secret is not None:
            out.append(_secret_file(loaded, path, svc.name, ids=(uid, gid), mode=mode, name=want.secret))
            continue
        assert want.source is not None  # the model requires source or secret
        at = f"{where}#/files/{i}/source"
        try:
            raw = read_source_file(loaded.root, want.source, SOURCE_CAP)
        except SourceUnusable as exc:
            raise InputError(exc.reason, location=at, hint="the path is relative to the fleet folder") from None
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            if want.template:
                raise InputError(f"{want.source} is not UTF-8 text, so it cannot be a template", location=at) from None
            out.append(DesiredFile(path=path, service=svc.name, uid=uid, gid=gid, mode=mode,
                                   sha256=hashlib.sha256(raw).hexdigest(), content=None, data=raw))  # fmt: skip
            continue
        if want.template:
            text = fill(text, values, f"{want.source} (template of {where})")
        out.append(
            DesiredFile(
                path=path,
                service=svc.name,
                uid=uid,
                gid=gid,
                mode=mode,
                sha256=hashlib.sha256(text.encode()).hexdigest(),
                content=text,
            )
        )
    return out


def _secret_file(
    loaded: LoadedFleet, path: str, service: str, *, ids: tuple[int, int], mode: str, name: str
) -> DesiredFile:
    import hashlib

    from mcfleet.fleet.secrets import decrypt_sealed, read_sealed

    sealed: str | None = None  # the encrypted file's sha256: read once, for this and for decrypting
    try:
        data = read_sealed(loaded.root, name)
        sealed = hashlib.sha256(data).hexdigest()
        content: str | None = decrypt_sealed(name, data).decode()
        error = None
    except InputError as exc:
        content, error = None, exc.message + (f" ({exc.hint})" if exc.hint else "")
    except UnicodeDecodeError:
        content, error = None, f"secret {name} is not UTF-8 text"
    return DesiredFile(path, service, ids[0], ids[1], mode, "", content, secret=name, error=error, sealed=sealed)


# The shell variable `mcfleet render` sets to the node helper's source (apply/node_helper.py) before the
# declared files: a service's folders are the agent account's, which could plant a link on the way to a
# file; a plain `install` as root follows a link in any folder on its path, the helper never does.
WRITER = "MCFLEET_NODE"


def writer_preamble(source: str) -> str:
    """The lines that set WRITER to the helper's `source`, printed once above the files' commands."""
    end = "MCFLEET_NODE_PY"
    while end in source.splitlines():
        end += "_"
    return (
        "# the writer of the files below (mcfleet's node helper, run as root): it walks each path from / without\n"
        "# following a link (the agent's account owns the service folders) and writes through a temp file\n"
        f"{WRITER}=$(cat <<'{end}'\n{source.rstrip(chr(10))}\n{end}\n)"
    )


@dataclass(frozen=True)
class RenderedFile:
    """A declared file as `mcfleet render` prints it: shell commands that write it (run as root) with the
    node helper set by `writer_preamble`, its sub-folders first (0750, owned like the file, as apply makes them)."""

    host: str
    file: DesiredFile

    @property
    def writes(self) -> bool:
        """Whether script() writes the file (needs the writer); a secret's or a binary file's is only named."""
        return self.file.data is None and self.file.secret is None and self.file.content is not None

    def as_dict(self) -> dict[str, object]:
        f = self.file
        if f.secret is not None:
            return {"host": self.host, "service": f.service, "file": f.path, "owner": f.owner, "mode": f.mode,
                    "secret": f.secret}  # fmt: skip
        if f.data is not None:
            return {"host": self.host, "service": f.service, "file": f.path, "owner": f.owner, "mode": f.mode,
                    "sha256": f.sha256, "binary": len(f.data)}  # fmt: skip
        return {"host": self.host, "service": f.service, "file": f.path, "owner": f.owner, "mode": f.mode,
                "sha256": f.sha256, "content": f.content}  # fmt: skip

    def script(self) -> str:
        import shlex

        f = self.file
        if f.data is not None:
            return (f"# file {f.path} of {f.service} on {self.host} (owner {f.owner}, mode {f.mode}): binary, "
                    f"{len(f.data)} bytes, sha256 {f.sha256}")  # fmt: skip
        if f.secret is not None or f.content is None:
            return (f"# file {f.path} of {f.service} on {self.host} (owner {f.owner}, mode {f.mode}): secret "
                    f"{f.secret}, not shown (mcfleet secret show {f.secret})")  # fmt: skip
        end = "MCFLEET_EOF"
        while end in f.content.splitlines():
            end += "_"
        body = f.content if f.content.endswith("\n") or not f.content else f.content + "\n"
        run = f'python3 -c "${WRITER}"'
        lines = [f"# file {f.path} of {f.service} on {self.host} (owner {f.owner}, mode {f.mode})"]
        lines += [f"{run} mkdir {shlex.quote(folder)} 0750 {f.owner}" for folder in sub_folders(f)]
        lines.append(f"{run} put {shlex.quote(f.path)} {f.mode} {f.owner} <<'{end}'")
        return "\n".join(lines) + f"\n{body}{end}"


def sub_folders(want: DesiredFile) -> list[str]:
    """The folders between /srv/<svc> and the file, outermost first (apply makes them 0750, owned like the file)."""
    base = service_dir(want.service)
    if not want.path.startswith(base + "/"):
        return []
    parts = want.path.removeprefix(base + "/").split("/")[:-1]
    return [f"{base}/{'/'.join(parts[:depth])}" for depth in range(1, len(parts) + 1)]
