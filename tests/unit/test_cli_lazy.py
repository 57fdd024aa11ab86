"""Commands load lazily: every registered command is reachable, and `validate` stays light."""

from __future__ import annotations

import subprocess
import sys

from mcfleet.cli.main import LAZY_COMMANDS, _commands_of


def test_every_lazy_command_is_registered_by_its_module() -> None:
    for name, module in LAZY_COMMANDS.items():
        assert name in _commands_of(module), f"{module}.register() does not define {name!r}"


def test_validate_does_not_import_ssh_grpc_or_apply() -> None:
    code = (
        "import sys\nfrom mcfleet.cli.main import main\n"
        "main(['validate', '--json', '.'])\n"
        "heavy = [m for m in ('asyncssh', 'grpc', 'mcfleet.apply.session', 'podman') if m in sys.modules]\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "HEAVY="
