# Packages for one system.  These need nixpkgs (Python and its libraries), so
# they are built on a machine that can fetch it; nix/lib and checks.fleet do not.
# There is no Nix-built agent bundle for Debian nodes: a tarball of store paths
# only runs where /nix/store exists, so Debian nodes get the agent PEX that
# `mcfleet apply` builds (python -m mcfleet.bundle: one file, both architectures).
{ pkgs, src }:
let
  lib = pkgs.lib;
in
rec {
  mcfleet = pkgs.callPackage ./mcfleet.nix { inherit src; };
  mcfleet-agent = pkgs.callPackage ./mcfleet-agent.nix { inherit mcfleet; };
  deploy = pkgs.writeShellScriptBin "mcfleet-deploy" ((import ../lib/deploy.nix).scriptText "${mcfleet}/bin/mcfleet");
  default = mcfleet;
}
