"""`mcfleet secret list|set|show|edit|rekey`: the fleet's age-encrypted secrets (fleet/secrets.py)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import typer

from mcfleet.cli.complete import complete_secret
from mcfleet.cli.fleetdir import fleet_root
from mcfleet.cli.output import emit_json
from mcfleet.errors import InputError
from mcfleet.fleet.load import LoadedFleet, load_fleet

JSON_OPT = typer.Option(False, "--json", help="Print JSON (names and recipients, never a value).")


def _loaded() -> LoadedFleet:
    loaded = load_fleet(fleet_root())
    if loaded.fleet is None:
        first = loaded.findings[0]
        raise InputError(first.message, location=first.location(), hint=first.hint)
    return loaded


def _said(name: str, recipients: list[str], json_out: bool) -> None:
    if json_out:
        emit_json({"secret": name, "recipients": recipients})
    else:
        typer.echo(f"secret {name}: encrypted to {len(recipients)} recipient(s)")


def secret_set(
    name: str = typer.Argument(
        ..., help="The secret's name (secrets/NAME.age).", autocompletion=complete_secret, metavar="NAME"
    ),
    from_file: Path | None = typer.Option(
        None, "--from", help="Read the value from this file (default: stdin).", metavar="FILE"
    ),
    allow_empty: bool = typer.Option(False, "--allow-empty", help="Store an empty value (refused otherwise)."),
    json_out: bool = JSON_OPT,
) -> None:
    """Encrypt a value (stdin or --from FILE) as secret NAME to the operators and the hosts that use it.

    The value is never an argument (it would show in the process list).

    Examples:

      mcfleet secret set mcq-token < token.txt

      mcfleet secret set metacrypt-ca-key --from ca.key --json
    """
    from mcfleet.fleet.secrets import encrypt_secret

    loaded = _loaded()
    value = _read_value(from_file)
    if not value and not allow_empty:  # e.g. `cat missing.txt | mcfleet secret set x`: the pipe gave nothing
        where = from_file or "stdin"
        raise InputError(f"the value for secret {name} is empty ({where} gave no bytes)",
                         hint="check what you piped in, or pass --allow-empty to store an empty value")  # fmt: skip
    _said(name, encrypt_secret(loaded, name, value), json_out)


def _read_value(from_file: Path | None) -> bytes:
    if from_file is None:
        if sys.stdin.isatty():
            typer.echo("reading the value from the terminal: type or paste it, then Ctrl-D", err=True)
        return sys.stdin.buffer.read()
    try:
        return from_file.read_bytes()
    except OSError as exc:
        raise InputError(f"--from {from_file}: cannot read it: {exc.strerror}", hint="give a readable file") from None


def secret_show(
    name: str = typer.Argument(..., help="The secret's name.", autocompletion=complete_secret, metavar="NAME"),
) -> None:
    """Decrypt secret NAME with your identity ($MCFLEET_AGE_IDENTITY) and print it to stdout.

    Examples:

      mcfleet secret show mcq-token

      MCFLEET_AGE_IDENTITY=~/.ssh/id_ed25519 mcfleet secret show mcq-token | wc -c
    """
    from mcfleet.fleet.secrets import decrypt_secret

    value = decrypt_secret(_loaded().root, name)  # errors first: nothing is written before it decrypts
    sys.stdout.buffer.write(value)
    sys.stdout.flush()


def secret_edit(
    name: str = typer.Argument(
        ..., help="The secret's name (created when new).", autocompletion=complete_secret, metavar="NAME"
    ),
    allow_empty: bool = typer.Option(False, "--allow-empty", help="Store an empty value (refused otherwise)."),
) -> None:
    """Edit secret NAME in $VISUAL or $EDITOR (a private temp file, removed after), then encrypt it again.

    Without either variable, vi.  A file left empty is refused (nothing is written) unless
    --allow-empty.

    Examples:

      mcfleet secret edit mcq-token

      EDITOR=nano mcfleet secret edit new-secret
    """
    from mcfleet.fleet.secrets import decrypt_secret, encrypt_secret, secret_paths

    loaded = _loaded()
    existed = secret_paths(loaded.root, name)[0].exists()
    old = decrypt_secret(loaded.root, name) if existed else b""
    variable, editor, argv = _editor()
    with tempfile.TemporaryDirectory(prefix="mcfleet-secret.") as folder:  # 0700
        path = Path(folder) / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(old)
        try:
            done = subprocess.run([*argv, str(path)], check=False)
        except OSError as exc:  # not found, not executable
            raise InputError(
                f"cannot run the editor {editor!r}: {exc.strerror}: secret {name} not changed",
                location=f"${variable}" if variable else "editor",
                hint="set $VISUAL or $EDITOR to an editor on your PATH (e.g. EDITOR=nano)",
            ) from None
        if done.returncode != 0:
            raise InputError(f"{editor} exited with an error: secret {name} not changed")
        new = path.read_bytes()
    if existed and new == old:
        typer.echo(f"secret {name}: unchanged")
        return
    if not new and not allow_empty:
        raise InputError(
            f"the edited value of secret {name} is empty: secret {name} not changed",
            hint="write the value in the editor, or pass --allow-empty to store an empty value",
        )
    _said(name, encrypt_secret(loaded, name, new), False)


def _editor() -> tuple[str | None, str, list[str]]:
    """(the variable it came from, the editor as given, its argv): $VISUAL, else $EDITOR, else vi."""
    for variable in ("VISUAL", "EDITOR"):
        given = os.environ.get(variable, "")
        try:
            argv = shlex.split(given)
        except ValueError as exc:  # an unbalanced quote
            raise InputError(
                f"${variable} ({given!r}) cannot be read as a command: {exc}",
                location=f"${variable}",
                hint=f"fix the quoting in ${variable}",
            ) from None
        if argv:
            return variable, given, argv
    return None, "vi", ["vi"]


def secret_rekey(
    names: list[str] = typer.Argument(
        None, help="Secrets to rekey (default: all).", autocompletion=complete_secret, metavar="NAME"
    ),
    json_out: bool = JSON_OPT,
) -> None:
    """Encrypt secrets again to today's recipients (after a host key or an operator changed).

    Needs your identity to decrypt them first ($MCFLEET_AGE_IDENTITY).

    Examples:

      mcfleet secret rekey

      mcfleet secret rekey mcq-token --json
    """
    from mcfleet.fleet.secrets import declared_secrets, decrypt_secret, encrypt_secret, identities

    loaded = _loaded()
    keys = identities()
    done = {}
    for name in names or [n for n in declared_secrets(loaded) if (loaded.root / "secrets" / f"{n}.age").exists()]:
        done[name] = encrypt_secret(loaded, name, decrypt_secret(loaded.root, name, keys))
    if json_out:
        emit_json({"rekeyed": done})
        return
    for name, recipients in done.items():
        typer.echo(f"secret {name}: encrypted to {len(recipients)} recipient(s)")


def _short_key(key: str) -> str:
    """A recipient as people compare them: its type and the end of the key (public, but long)."""
    kind, _, body = key.partition(" ")
    return f"{kind} …{body[-8:]}" if body else f"{key[:12]}…{key[-6:]}"


def secret_list(json_out: bool = typer.Option(False, "--json", help="Print JSON (never a value).")) -> None:
    """List the secrets: which services use each, whom it is encrypted to, and what needs doing.

    STATE is ok; missing (a service uses it, secrets/NAME.age does not exist: `mcfleet
    secret set NAME`); host-key (a host using it has no pinned ssh-ed25519 ssh.host_key
    to encrypt it to); rekey (not encrypted to today's recipients, after a host key or
    an operator changed: `mcfleet secret rekey NAME`); unused (no active service uses
    it).  Reads only the recipient files: no identity needed, never a value.  Exit 0
    when every secret is ok or unused, else 1.

    Examples:

      mcfleet secret list

      mcfleet secret list --json | jq -r '.secrets[] | select(.state == "rekey") | .name'
    """
    from mcfleet.cli.output import table
    from mcfleet.fleet.secrets import secret_states

    rows = secret_states(_loaded())
    if json_out:
        emit_json({"secrets": rows})
    elif not rows:
        typer.echo('no secrets (a service file with "secret": NAME declares one)')
    else:
        lines = []
        for r in rows:
            note = [f"not encrypted to {_short_key(k)}" for k in r["not_encrypted_to"]]
            note += [f"still encrypted to {_short_key(k)}" for k in r["no_longer_wanted"]]
            note += [f"{h} has no pinned ssh-ed25519 ssh.host_key" for h in r["hosts_without_key"]]
            lines.append([r["name"], r["state"], ", ".join(r["used_by"]), len(r["recipients"]), "; ".join(note)])
        typer.echo(table(["SECRET", "STATE", "USED BY", "RECIPIENTS", "NOTE"], lines), nl=False)
    if any(r["state"] not in ("ok", "unused") for r in rows):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    secret = typer.Typer(help="The fleet's age-encrypted secrets.", no_args_is_help=True)
    secret.command("list")(secret_list)
    secret.command("set")(secret_set)
    secret.command("show")(secret_show)
    secret.command("edit")(secret_edit)
    secret.command("rekey")(secret_rekey)
    app.add_typer(secret, name="secret")
