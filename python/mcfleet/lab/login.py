"""How mcfleet logs in to a lab node: as root, or as a non-root user escalating with sudo or doas.

The real fleet is reached as `kyle`, escalating with `sudo -n` or `doas -n`; a lab node
can be set up the same way (`mcfleet lab up --full 1 --login sudo`): the user with the
lab's client key, and exactly one rule that lets it run commands as root without a
password.  Only full (systemd) nodes offer sudo/doas logins: their rootfs has both.
"""

from __future__ import annotations

from typing import Literal, get_args

Login = Literal["root", "sudo", "doas"]
LOGINS: tuple[str, ...] = get_args(Login)
LOGIN_USER = "kyle"

# The one rule per program, as an operator would add it.
SUDO_RULE = f"{LOGIN_USER} ALL=(ALL) NOPASSWD: ALL\n"
DOAS_RULE = f"permit nopass {LOGIN_USER} as root\n"


def etc_hosts(hostname: str) -> str:
    """/etc/hosts naming the node itself (sudo warns "unable to resolve host" without it)."""
    return (
        "127.0.0.1\tlocalhost\n"
        f"127.0.1.1\t{hostname}\n"
        "::1\tlocalhost ip6-localhost ip6-loopback\n"
        "ff02::1\tip6-allnodes\n"
        "ff02::2\tip6-allrouters\n"
    )


def login_script(login: Login) -> str:
    """Shell run as root inside the node: the login user with root's authorized key, and its rule."""
    if login == "root":
        return "true"
    u = LOGIN_USER
    rule = (
        f"printf '%s' '{SUDO_RULE}' > /etc/sudoers.d/{u} && chmod 0440 /etc/sudoers.d/{u}"
        if login == "sudo"
        else f"printf '%s' '{DOAS_RULE}' > /etc/doas.conf && chmod 0400 /etc/doas.conf"
    )
    return "\n".join(
        [
            "set -eu",
            f"getent passwd {u} >/dev/null || useradd --create-home --shell /bin/sh {u}",
            f"install -d -m 0700 -o {u} -g {u} /home/{u}/.ssh",
            f"install -m 0600 -o {u} -g {u} /root/.ssh/authorized_keys /home/{u}/.ssh/authorized_keys",
            rule,
        ]
    )


def ssh_fields(login: str) -> dict[str, object]:
    """The host.json `ssh` fields for this login."""
    if login == "root":
        return {"user": "root"}
    return {"user": LOGIN_USER, "sudo": True, "become": login}
