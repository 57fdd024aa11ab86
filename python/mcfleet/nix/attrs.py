"""The flake attributes Python relies on and the README documents, in one registry.

A T1 test checks that every entry exists in flake.nix (tests/nix/test_flake.py), so a
renamed output fails CI instead of a deploy.  `pure` entries evaluate with no nixpkgs
(builtins only); the others need nixpkgs and are only checked for the presence of
their parent attribute offline.
"""

from __future__ import annotations

from dataclasses import dataclass

SYSTEMS: dict[str, str] = {"amd64": "x86_64-linux", "arm64": "aarch64-linux"}


@dataclass(frozen=True)
class FlakeAttr:
    """A flake output mcfleet evaluates or builds, by key."""

    key: str
    template: str  # with {system} and/or {host}
    pure: bool
    description: str

    def path(self, *, system: str = "x86_64-linux", host: str = "") -> str:
        return self.template.format(system=system, host=host)


ATTRS: dict[str, FlakeAttr] = {
    a.key: a
    for a in (
        FlakeAttr("findings", "lib.findings", True, "pure-Nix findings for the fleet in the flake"),
        FlakeAttr("host_values", "lib.hosts.{host}", True, "derived values of one host (users, resolvers, unit...)"),
        FlakeAttr("rule_codes", "lib.ruleCodes", True, "the rule codes nix/lib implements"),
        FlakeAttr("fleet_check", "checks.{system}.fleet", True, "pure fleet validation (builds with no nixpkgs)"),
        FlakeAttr("validate_check", "checks.{system}.validate", False, "Python `mcfleet validate` as a check"),
        FlakeAttr("toplevel_check", "checks.{system}.toplevel-{host}", False, "a NixOS host's toplevel, as a check"),
        FlakeAttr("nixos_modules", "nixosModules.default", True, "all mcfleet NixOS modules"),
        FlakeAttr("nixos_system", "nixosConfigurations.{host}", False, "a NixOS host's system"),
        FlakeAttr(
            "toplevel",
            "nixosConfigurations.{host}.config.system.build.toplevel",
            False,
            "what `mcfleet apply` builds, pushes and activates on a NixOS host",
        ),
        FlakeAttr("cli", "packages.{system}.mcfleet", False, "the mcfleet CLI"),
        FlakeAttr("agent", "packages.{system}.mcfleet-agent", False, "the agent package in each NixOS system closure"),
        FlakeAttr("deploy_app", "apps.{system}.deploy", False, "`nix run .#deploy -- <host>`"),
        # what the README tells NixOS users to call from their own flake
        FlakeAttr("mk_nixos_system", "lib.mkNixosSystem", True, "one host's system from a fleet folder"),
        FlakeAttr("mk_nixos_configurations", "lib.mkNixosConfigurations", True, "every NixOS host of a fleet folder"),
        FlakeAttr("mk_fleet_checks", "lib.mkFleetChecks", True, "checks.<system>.fleet for a fleet folder"),
        FlakeAttr("template", "templates.default", True, "`nix flake init -t <mcfleet>`: a new fleet folder"),
        FlakeAttr("dev_shell", "devShells.{system}.default", False, "`nix develop`: mcfleet, nix, the test tools"),
    )
}


def attr(key: str, *, system: str = "x86_64-linux", host: str = "") -> str:
    """The attribute path for a registry key, e.g. attr("agent", system="aarch64-linux")."""
    return ATTRS[key].path(system=system, host=host)


def system_for(arch: str) -> str:
    """The Nix system of a host.json `arch` (amd64 -> x86_64-linux, arm64 -> aarch64-linux)."""
    return SYSTEMS[arch]
