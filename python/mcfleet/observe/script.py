"""The one facts script run per host (one round trip), generated from the host file.

Plain POSIX sh (Debian's dash, NixOS's bash), read-only, no secrets: private
keys never leave the node.  Of a `*.pem` file only its CERTIFICATE blocks are sent
(a key kept as `privkey.pem`, or a file with the key and the chain, stays on the node),
whatever its name (a service called `keycloak` has `keycloak.pem`); of a `*.key` file
only its owner, its mode and the sha256 of its public key.  `observe.parse` turns the
output into `Facts`; nothing here parses.

Wire format (version 2).  A node's content must never be able to forge or end a
record, so every value read on the node is base64-encoded (no newline, no space)
and capped on the node (`head -c`) before it leaves:

    mcfleet-facts 2                 first line of ours; anything before it is login noise
    <probe> <base64 value>          one line per probe; the value is the probe's stdout
    cert <base64 path> <base64 pem> one line per certificate file (the only repeated record)
    end                             the script ran to its end

The records are gathered in the shell (`out=$(…)`) and printed at once at the end: printed
probe by probe they left the node as ~60 small SSH data packets per host, each decrypted and
dispatched by the client (with `b()` below, measured at 20 lab hosts: `plan`'s client CPU went
from 0.38 to 0.25 s, the bare-SSH floor's running the same script from 0.32 to 0.20 s, the nodes'
from 3.30 to 2.14 s).  The node holds them meanwhile: at most the caps below, a few KiB on a
normal host.

A value longer than `VALUE_CAP` bytes arrives as `VALUE_CAP + 1` bytes, so the
parser knows it was cut and fails that host with the probe's name.

Adding a value: append a `Probe(name, body)` to `probes()` (name: lowercase,
digits, `-`; body: POSIX sh whose stdout is the value, run with stderr
discarded), add a field to `Facts`, and read it in `parse.parse_facts` with
`values.text("<name>")`.  Quote every host-file value with `shlex.quote`.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from functools import lru_cache

from mcfleet.fleet.desired import CERT_DIR
from mcfleet.observe.files import READ_NO_LINK, files_probe_body
from mcfleet.observe.hostlevel import host_level_probes
from mcfleet.observe.manifest import AGENT_RECORD, MANIFEST_PATH

MAGIC = "mcfleet-facts 2"
END = "end"
CERT = "cert"
VALUE_CAP = 1024 * 1024  # bytes per value read on the node
CERT_CAP = 64 * 1024  # bytes per certificate file (a fullchain is a few KiB)
CERT_FILES_CAP = 512  # certificate files read per host
# sed: only the certificate blocks of a .pem file (never a private key kept in it)
CERT_BLOCKS = "'/^-----BEGIN CERTIFICATE-----/,/^-----END CERTIFICATE-----/p'"
SERVED_TIMEOUT = 3  # seconds for one TLS handshake with the node's own proxy
OUTPUT_CAP = 16 * 1024 * 1024  # bytes of script output the operator's machine reads per host
PROBE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")


@dataclass(frozen=True)
class ScriptInputs:
    """What the facts script of one host asks the node about."""

    users: tuple[str, ...]
    uids: tuple[int, ...]
    gids: tuple[int, ...]
    agent_path: str
    agent_unit: str
    containers: bool = False  # ask podman (only when the host runs or ran services)
    cert_dir: str = CERT_DIR
    manifest_path: str = MANIFEST_PATH
    agent_record: str = AGENT_RECORD  # the stat key and hash of the agent binary root last installed
    dirs: tuple[str, ...] = ()  # folders whose owner, group and mode the host kind checks
    files: tuple[str, ...] = ()  # the services' declared files (observe/files.py)
    file_texts: tuple[str, ...] = ()  # those whose text the plan diffs (never a secret's)
    subids: tuple[str, ...] = ()  # "<user> <start:count> <start:count>": wanted subuid, subgid (observe/hostlevel.py)
    addresses: bool = False  # the node's IP addresses (only when a service publishes on one of them)
    ports: tuple[str, ...] = ()  # the services' host ports, 4 hex digits: who listens on them (listen probe)
    route_map: str = ""  # HAProxy's map file, when this host's proxy carries l4 routes through HAProxy
    served: tuple[tuple[str, str], ...] = ()  # (address:port, route key) of the TLS routes its proxy ends
    agent_user: str = ""  # the agent's account: its podman.socket is looked for under its uid ("": its home's owner's)


@dataclass(frozen=True)
class Probe:
    """One value read on the node: `body` is POSIX sh; its stdout (capped, base64) is the value."""

    name: str
    body: str
    source: str = ""  # what the value is read from, for error messages ("/etc/resolv.conf")

    def __post_init__(self) -> None:
        if not PROBE_NAME.match(self.name) or self.name in (CERT, END):
            raise ValueError(f"bad probe name {self.name!r}")


def probes(inp: ScriptInputs) -> list[Probe]:
    q = shlex.quote
    users = " ".join(q(u) for u in inp.users)
    uids = " ".join(str(u) for u in inp.uids)
    gids = " ".join(str(g) for g in inp.gids)
    agent, unit, record = q(inp.agent_path), q(inp.agent_unit), q(inp.agent_record)
    record_dir, _, record_name = inp.agent_record.rpartition("/")
    record_tmp, record_dir = q(f"{record_dir}/.{record_name}") + ".$$.tmp", q(record_dir)  # $$: this shell's
    unit_file = q(f"/etc/systemd/system/{inp.agent_unit}")
    # the agent's folder is its account's: its files are read as the declared files are (observe/files.py),
    # in a subshell in that folder (its real path checked), by last name, never through a link; a check that
    # fails reads nothing (the hash of nothing: the plan installs the binary again, which follows no link)
    agent_dir, _, name = inp.agent_path.rpartition("/")
    agent_name = q(name)
    in_agent_dir = f'( cd -P {q(agent_dir or "/")} 2>/dev/null && [ "$(pwd -P)" = {q(agent_dir or "/")} ] &&'
    names_re = q("^(" + "|".join(re.escape(u) for u in inp.users) + "):") if inp.users else "'^$'"
    return [
        Probe("os", "cat /etc/os-release", "/etc/os-release"),
        Probe("uname", "uname -m; uname -n", "uname"),
        Probe("euid", "id -u", "id -u"),
        Probe("passwd", f'for k in {users} {uids}; do getent passwd "$k"; done', "getent passwd"),
        Probe("group", f'for k in {users} {gids}; do getent group "$k"; done', "getent group"),
        Probe("passwd-file", _awk_select("/etc/passwd", inp.users, inp.uids), "/etc/passwd"),
        Probe("group-file", _awk_select("/etc/group", inp.users, inp.gids), "/etc/group"),
        Probe("subuid", f"grep -E {names_re} /etc/subuid", "/etc/subuid"),
        Probe("subgid", f"grep -E {names_re} /etc/subgid", "/etc/subgid"),
        Probe("resolv", "cat /etc/resolv.conf", "/etc/resolv.conf"),
        Probe(
            "agent",
            # /srv/mcp is mcp's: a link planted there is never followed by this root-run read
            # (it reads as absent, so the plan re-installs the binary, which never follows it either)
            # The binary is tens of MB: its hash is taken from root's record (written at the install, or by
            # the read that last hashed it) while the file's stat key (device, inode, size, mtime, ctime)
            # is the recorded one.  Replacing the file, or writing it, moves its ctime, which no one can set
            # back.  A stat that cannot print the key (busybox), or no record: hashed.
            f"if [ -f {agent} ] && [ ! -L {agent} ]; then k=; r=; "
            f"k=$(stat -c '%d %i %s %.9Y %.9Z' {agent} 2>/dev/null) && r=$(head -c 300 {record} 2>/dev/null); "
            'case "$r" in "$k "*) h=${r#"$k "};; *) h=;; esac; case "$h" in *[!0-9a-f]*) h=;; esac; '
            f'if [ -z "$k" ] || [ ${{#h}} != 64 ]; then h=$( {in_agent_dir} {READ_NO_LINK} if={agent_name} bs=1M ) '
            '| sha256sum | cut -d" " -f1); '
            # the key was taken before the bytes were read: a file changed meanwhile has another key next time
            f'[ -n "$k" ] && [ -d {record_dir} ] && [ ! -L {record_dir} ] && (umask 077; '
            f'printf "%s %s\\n" "$k" "$h" > {record_tmp} && mv -f {record_tmp} {record}) 2>/dev/null; fi; '
            'echo "sha256 $h"; '
            f"[ -f {agent}.version ] && [ ! -L {agent}.version ] && "
            f'echo "version $( {in_agent_dir} {READ_NO_LINK} if={agent_name}.version bs=200 count=1 ) | head -n 1)"; '
            "else echo absent; fi",
            inp.agent_path,
        ),
        Probe(
            "unit",
            # one systemctl for the three (is-active, is-enabled and show print the same states; each
            # process is ~7 ms on a node), split by the shell's own read
            "if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then "
            f"systemctl show -p ActiveState -p UnitFileState -p DropInPaths {unit} | {{ a=; e=; d=; "
            "while IFS= read -r l; do case $l in ActiveState=*) a=${l#*=};; UnitFileState=*) e=${l#*=};; "
            'DropInPaths=*) d=${l#*=};; esac; done; echo "active $a"; echo "enabled $e"; echo "dropins $d"; }; '
            "else echo no-systemd; fi; "
            f"if [ -f {unit_file} ]; then echo \"unitsha $(sha256sum < {unit_file} | cut -d' ' -f1)\"; fi",
            "systemctl",
        ),
        Probe("nixos", "readlink /run/current-system", "/run/current-system"),
        Probe(
            "dirs",
            f"for d in {' '.join(q(d) for d in inp.dirs)}; do "
            'stat -c "%n %U %G %a" "$d" 2>/dev/null || echo "$d -"; done',
            "stat of the managed folders",
        ),
        Probe("files", files_probe_body(inp.files, inp.file_texts), "stat and sha256 of the declared files"),
        Probe(
            "certkeys",
            # the certificates' private keys: owner, mode and file type only (a link is not followed: stat
            # without -L), all in one process
            f'set -- {q(inp.cert_dir)}/*.key; if [ -e "$1" ] || [ -L "$1" ]; then '
            f"stat -c '%u %U %a %F:%n' -- \"$@\" | head -n {CERT_FILES_CAP}; fi",
            "stat of the certificates' keys",
        ),
        Probe(
            "keypubs",
            # whether each key belongs to its certificate: the sha256 of the public key openssl derives from
            # it, never the key.  Read from a capped pipe (a plain file, not a link); an encrypted key fails
            # at once on the empty passphrase, as it fails the proxy.  A key openssl cannot load leaves
            # sha256sum an empty input (parse.EMPTY_SHA256).  Without openssl, or a key this account cannot
            # read: unknown, never "cannot be loaded".
            "if ! command -v openssl >/dev/null 2>&1; then echo absent; else n=0; "
            f'for k in {q(inp.cert_dir)}/*.key; do [ -f "$k" ] && [ ! -L "$k" ] && [ -r "$k" ] || continue; '
            f'n=$((n + 1)); [ "$n" -gt {CERT_FILES_CAP} ] && break; '
            f'h=$(head -c {CERT_CAP} -- "$k" | openssl pkey -passin pass: -pubout -outform DER | sha256sum); '
            'echo "${h%% *} $k"; done; fi',
            "openssl pkey of the certificates' keys",
        ),
        Probe(
            "addrs",
            # `ip` (iproute2) on Debian and NixOS; Debian's `hostname -I` where it is missing; else unknown.
            # With ip_nonlocal_bind set (a floating address, keepalived) any address binds: unknown too.
            f"if [ {1 if inp.addresses else 0} = 0 ]; then echo absent; "
            "elif grep -qx 1 /proc/sys/net/ipv4/ip_nonlocal_bind /proc/sys/net/ipv6/ip_nonlocal_bind; "
            "then echo nonlocal; "
            "elif command -v ip >/dev/null 2>&1; then ip -o addr show | awk '{print $4}'; "
            "else hostname -I; fi",
            "ip -o addr show",
        ),
        Probe(
            "listen",
            # the kernel's socket tables, read as any user: TCP sockets in LISTEN (st 0A) and unconnected bound
            # UDP sockets (st 07, no remote address) on the asked ports only, so a busy node sends a few lines
            f"if [ -z {q(' '.join(inp.ports))} ]; then echo absent; else set --; "
            'for t in tcp tcp6 udp udp6; do [ -r "/proc/net/$t" ] && set -- "$@" "/proc/net/$t"; done; '
            f"awk -v want={q(' ' + ' '.join(inp.ports) + ' ')} "
            + q(
                'FNR > 1 { n = split($2, a, ":"); if (!index(want, " " a[n] " ")) next; '
                'p = FILENAME; sub("^/proc/net/", "", p); sub(/6$/, "", p); '
                'if ((p == "tcp" && $4 == "0A") || (p == "udp" && $4 == "07" && $3 ~ /^0+:0000$/)) print p, $2 }'
            )
            + ' "$@"; fi',
            "/proc/net/tcp, /proc/net/udp",
        ),
        Probe(
            "routemap",
            # what a restarted HAProxy would serve: it reads this file at start.  Root reads it only when no
            # component of its path is a link (the proxy's account may own its folder): else it is missing
            f"if [ -z {q(inp.route_map)} ]; then echo absent; "
            f'elif [ -f {q(inp.route_map)} ] && [ "$(readlink -f -- {q(inp.route_map)})" = {q(inp.route_map)} ]; '
            f"then echo map; cat {q(inp.route_map)}; else echo missing; fi",
            inp.route_map or "HAProxy's map file",
        ),
        Probe("served", _served_body(inp.served), "openssl s_client to the proxy's TLS routes"),
        Probe("manifest", f"cat {q(inp.manifest_path)}", inp.manifest_path),
        Probe(
            "containers",
            f"if [ {1 if inp.containers else 0} = 1 ] && command -v podman >/dev/null 2>&1; then "
            "podman ps -a --format json || echo '[]'; else echo absent; fi",
            "podman ps",
        ),
        *host_level_probes(inp),
    ]


SERVED_AT_ONCE = 8  # handshakes in flight at once (a proxy with many routes is asked in batches)


def _served_body(served: tuple[tuple[str, str], ...]) -> str:
    """The certificate the proxy presents for each TLS route, asked as a client would (the route's
    hostname as SNI, at the node's address): `<route key> <base64 PEM>` lines, an empty PEM when the
    handshake gave none.  A proxy reads its certificate files when it loads them, so a file changed
    since (an apply stopped between the cert and route steps, a copy by hand) is not what it serves.
    The handshakes of a batch run at once (each ~35 ms of openssl, which adds up on an edge with many
    routes); a proxy that takes a connection and never answers costs one timeout: the batches after
    it are not asked (no line: unknown).  No openssl on the node, or no private temp folder: `absent`,
    unknown."""
    if not served:
        return "echo absent"
    q = shlex.quote
    lines = [
        "if ! command -v openssl >/dev/null 2>&1 || ! d=$(mktemp -d 2>/dev/null); then echo absent; return; fi",
        "hung=0",
        f'served_one() {{ timeout {SERVED_TIMEOUT} openssl s_client -connect "$1" -servername "$2" </dev/null '
        '>"$d/$3" 2>/dev/null; echo $? >"$d/$3.rc"; }',
    ]
    for first in range(0, len(served), SERVED_AT_ONCE):
        batch = list(enumerate(served[first : first + SERVED_AT_ONCE], start=first))
        asks = " ".join(f"served_one {q(target)} {q(key.partition('/')[2])} {i} &" for i, (target, key) in batch)
        answers = " ".join(
            f"printf '%s ' {q(key)}; sed -n {CERT_BLOCKS} \"$d/{i}\" | head -c {CERT_CAP} | b; echo; "
            f'read -r rc <"$d/{i}.rc"; [ "$rc" = 124 ] && hung=1;'
            for i, (_target, key) in batch
        )
        lines.append(f"if [ $hung = 0 ]; then {asks} wait; {answers} fi")
    lines.append('rm -rf "$d"')
    return "\n".join(lines)


def _awk_select(path: str, names: tuple[str, ...], ids: tuple[int, ...]) -> str:
    """Every line of a passwd-format file whose name or numeric id (3rd field) is asked: read by a fixed
    parser, not getent, so a second account sharing an id and a lying NSS module both show."""
    q = shlex.quote
    wanted_names = q(" " + " ".join(names) + " ")
    wanted_ids = q(" " + " ".join(str(i) for i in ids) + " ")
    program = q('index(n, " " $1 " ") || index(i, " " $3 " ")')
    return f"awk -F: -v n={wanted_names} -v i={wanted_ids} {program} {path}"


# b(): base64 on one line.  GNU coreutils' base64 (Debian, NixOS) and BusyBox's take `-w 0`: one
# process less per value than `| tr -d '\n'` (~30 of the script's ~100 per run), which stays for a
# base64 without it.
@lru_cache(maxsize=64)  # hosts of one role ask the same questions: their script is made once
def facts_script(inp: ScriptInputs) -> str:
    asked = probes(inp)
    funcs = "\n".join(f"p_{p.name.replace('-', '_')}() {{\n{p.body}\n}}" for p in asked)
    calls = "\n".join(f"v {p.name} p_{p.name.replace('-', '_')}" for p in asked)
    return f"""\
LC_ALL=C; export LC_ALL
if base64 -w 0 </dev/null >/dev/null 2>&1; then b() {{ base64 -w 0; }}; else b() {{ base64 | tr -d '\\n'; }}; fi
v() {{ printf '%s ' "$1"; "$2" 2>/dev/null </dev/null | head -c {VALUE_CAP + 1} | b; echo; }}
{funcs}
out=$(
echo '{MAGIC}'
{calls}
n=0
for f in {shlex.quote(inp.cert_dir)}/*.pem; do
  [ -f "$f" ] || continue
  n=$((n + 1)); [ "$n" -gt {CERT_FILES_CAP} ] && break
  printf '{CERT} '; printf '%s' "$f" | b; printf ' '
  head -c {CERT_CAP + 1} "$f" 2>/dev/null | sed -n {CERT_BLOCKS} | b; echo
done
echo {END}
)
printf '%s\\n' "$out"
"""
