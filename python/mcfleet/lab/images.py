"""The lab's demo images: static busybox from this machine, imported with podman, pushed to the lab registry.

Each image answers HTTP on `$PORT` (default 8080) with one line, `<name> <version> port=<PORT>`,
so a curl shows which image and which port answered.  When a volume is mounted at /data,
every start appends a line to /data/starts (the DR drill checks that volume data survives).
Nothing is fetched from outside: the only binary is the host's /bin/busybox (busybox-static).
"""

from __future__ import annotations

import json
import shutil
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
}
# The container's output is a log to read back (`mcfleet logs`): a start line on stdout, then
# httpd -vv logs each request's URL and response on stderr.
START = (
    'mkdir -p /www && printf "%s %s port=%s\\n" "$APP" "$VERSION" "${PORT:-8080}" > /www/index.html'
    " && { [ ! -d /data ] || date >> /data/starts || true; }"
    ' && echo "$APP $VERSION listening on port ${PORT:-8080}"'
    ' && exec httpd -f -vv -p "${PORT:-8080}" -h /www'
)


def rootfs_tar(out: Path) -> Path:
    """The shared image root: /bin/busybox + applet links, /etc/passwd, empty /www /data /tmp."""
    target = out / "demo-root.tar"
    if target.exists():
        return target
    root = out / "demo-root"
    shutil.rmtree(root, ignore_errors=True)
    (root / "bin").mkdir(parents=True)
    for sub in ("etc", "www", "tmp"):
        (root / sub).mkdir()
    shutil.copy2(which("busybox"), root / "bin" / "busybox")
    for applet in APPLETS:
        (root / "bin" / applet).symlink_to("busybox")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    partial = target.with_suffix(".partial")
    with tarfile.open(partial, "w") as tar:
        tar.add(root, arcname=".")
    partial.replace(target)
    shutil.rmtree(root, ignore_errors=True)
    return target


def _changes(app: str, version: str) -> list[str]:
    cmd = json.dumps(["/bin/sh", "-c", START])
    return ["--change", f"ENV APP={app}", "--change", f"ENV VERSION={version}",
            "--change", "ENV PATH=/bin", "--change", "EXPOSE 8080", "--change", f"CMD {cmd}"]  # fmt: skip


async def build_and_push(work: Path, run_root: Path, registry: str, ca_file: Path) -> list[str]:
    """Import every demo image into a private podman store and push it to `registry`; return the refs.

    `run_root` must be a short path (podman's runroot; long ones make conmon time out)."""
    podman = which("podman")
    store = ["--root", str(work / "storage"), "--runroot", str(run_root), "--storage-driver", "vfs"]
    cert_dir = work / "certs"
    cert_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ca_file, cert_dir / "ca.crt")  # podman reads every *.crt in --cert-dir as a CA
    tar = rootfs_tar(work)
    pushed = []
    for name, (app, version) in DEMO_IMAGES.items():
        local = f"localhost/{name}"
        await run([podman, *store, "import", "-q", *_changes(app, version), str(tar), local], limit_s=120)
        ref = f"{registry}/{name}"
        await run([podman, *store, "push", "-q", "--cert-dir", str(cert_dir), local, f"docker://{ref}"], limit_s=120)
        pushed.append(ref)
    return pushed
