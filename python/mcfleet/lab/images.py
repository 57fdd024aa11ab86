"""The lab's demo images: static busybox from this machine, imported with podman, pushed to the lab registry.

Each image answers HTTP on `$PORT` (default 8080) with one line, `<name> <version> port=<PORT>`,
so a curl shows which image and which port answered.  When a volume is mounted at /data,
every start appends a line to /data/starts (the DR drill checks that volume data survives).

`demo/sni` answers HTTPS instead, ending TLS itself (for an l4 route, passed through by SNI):
`sni <version> port=<PORT> tls` on `$PORT` (default 8443), with the certificate and key at
`$TLS_CERT`/`$TLS_KEY` (default /tls/tls.pem and /tls/tls.key: mount the service's folder
there).  It runs this machine's Caddy (Debian's caddy package) with the libraries it links.

Nothing is fetched from outside: the binaries are the host's /bin/busybox (busybox-static)
and /usr/bin/caddy.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path

from mcfleet.lab.proc import run, which

APPLETS = ("sh", "ls", "cat", "echo", "printf", "mkdir", "date", "sleep", "httpd", "true", "false", "env",
           "wget", "nc", "id", "test", "hostname")  # fmt: skip
# name:tag -> (APP, VERSION) baked into the image's environment
DEMO_IMAGES: dict[str, tuple[str, str]] = {
    "demo/hello:1": ("hello", "1"),
    "demo/hello:2": ("hello", "2"),
    "demo/api:1": ("api", "1"),
    "demo/api:2": ("api", "2"),
    "demo/db:1": ("db", "1"),
    "demo/sni:1": ("sni", "1"),
}
TLS_APPS = frozenset({"sni"})  # images that end TLS themselves (the Caddy root)
# The container's output is a log to read back (`mcfleet logs`): a start line on stdout, then
# httpd -vv logs each request's URL and response on stderr.
START = (
    'mkdir -p /www && printf "%s %s port=%s\\n" "$APP" "$VERSION" "${PORT:-8080}" > /www/index.html'
    " && { [ ! -d /data ] || date >> /data/starts || true; }"
    ' && echo "$APP $VERSION listening on port ${PORT:-8080}"'
    ' && exec httpd -f -vv -p "${PORT:-8080}" -h /www'
)
# Caddy's config written at start: one HTTPS server on $PORT with the mounted certificate.
TLS_START = r"""#!/bin/sh
port="${PORT:-8443}"
cat > /tmp/caddy.json <<EOF
{"admin": {"disabled": true},
 "apps": {"tls": {"certificates": {"load_files": [{"certificate": "${TLS_CERT:-/tls/tls.pem}",
                                                    "key": "${TLS_KEY:-/tls/tls.key}"}]}},
          "http": {"servers": {"tls": {"listen": [":${port}"], "automatic_https": {"disable": true},
                                       "tls_connection_policies": [{}],
                                       "routes": [{"handle": [{"handler": "static_response",
                                                               "body": "${APP} ${VERSION} port=${port} tls\n"}]}]}}}}}
EOF
exec /bin/caddy run --config /tmp/caddy.json
"""


def _linked_libraries(binary: str) -> list[str]:
    """The shared objects `binary` loads (ldd's absolute paths, the loader included)."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    return sorted({word for line in out.splitlines() for word in line.split() if word.startswith("/")})


def rootfs_tar(out: Path, *, tls: bool = False) -> Path:
    """The image root: /bin/busybox + applet links, /etc/passwd, empty /www /data /tmp; with `tls`,
    also /bin/caddy, the libraries it links and /bin/start-tls."""
    target = out / ("demo-tls-root.tar" if tls else "demo-root.tar")
    if target.exists():
        return target
    root = out / ("demo-tls-root" if tls else "demo-root")
    shutil.rmtree(root, ignore_errors=True)
    (root / "bin").mkdir(parents=True)
    for sub in ("etc", "www", "tmp"):
        (root / sub).mkdir()
    shutil.copy2(which("busybox"), root / "bin" / "busybox")
    for applet in APPLETS:
        (root / "bin" / applet).symlink_to("busybox")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    if tls:
        caddy = which("caddy")
        shutil.copy2(caddy, root / "bin" / "caddy")
        for lib in _linked_libraries(caddy):
            dest = root / lib.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(lib, dest)  # follows links: the real file under the name the binary asks for
        (root / "bin" / "start-tls").write_text(TLS_START)
        (root / "bin" / "start-tls").chmod(0o755)
    partial = target.with_suffix(".partial")
    with tarfile.open(partial, "w") as tar:
        tar.add(root, arcname=".")
    partial.replace(target)
    shutil.rmtree(root, ignore_errors=True)
    return target


def _changes(app: str, version: str) -> list[str]:
    tls = app in TLS_APPS
    cmd = json.dumps(["/bin/start-tls"] if tls else ["/bin/sh", "-c", START])
    home = ["--change", "ENV HOME=/tmp", "--change", "ENV XDG_DATA_HOME=/tmp", "--change", "ENV XDG_CONFIG_HOME=/tmp"]
    return ["--change", f"ENV APP={app}", "--change", f"ENV VERSION={version}",
            "--change", "ENV PATH=/bin", "--change", f"EXPOSE {8443 if tls else 8080}",
            *(home if tls else []), "--change", f"CMD {cmd}"]  # fmt: skip


async def build_and_push(work: Path, run_root: Path, registry: str, ca_file: Path) -> list[str]:
    """Import every demo image into a private podman store and push it to `registry`; return the refs.

    `run_root` must be a short path (podman's runroot; long ones make conmon time out)."""
    podman = which("podman")
    store = ["--root", str(work / "storage"), "--runroot", str(run_root), "--storage-driver", "vfs"]
    cert_dir = work / "certs"
    cert_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ca_file, cert_dir / "ca.crt")  # podman reads every *.crt in --cert-dir as a CA
    pushed = []
    for name, (app, version) in DEMO_IMAGES.items():
        local = f"localhost/{name}"
        tar = rootfs_tar(work, tls=app in TLS_APPS)
        await run([podman, *store, "import", "-q", *_changes(app, version), str(tar), local], limit_s=120)
        ref = f"{registry}/{name}"
        await run([podman, *store, "push", "-q", "--cert-dir", str(cert_dir), local, f"docker://{ref}"], limit_s=120)
        pushed.append(ref)
    return pushed
