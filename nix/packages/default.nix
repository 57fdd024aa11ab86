# Packages for one system.  These need nixpkgs (Python and its libraries), so
# they are built on a machine that can fetch it; nix/lib and checks.fleet do not.
{ pkgs, src }:
let
  lib = pkgs.lib;
in
rec {
  mcfleet = pkgs.callPackage ./mcfleet.nix { inherit src; };
  mcfleet-agent = pkgs.callPackage ./mcfleet-agent.nix { inherit mcfleet; };
  agent-bundle = pkgs.callPackage ./agent-bundle.nix { inherit mcfleet-agent; };
  deploy = pkgs.writeShellScriptBin "mcfleet-deploy" ((import ../lib/deploy.nix).scriptText "${mcfleet}/bin/mcfleet");
  default = mcfleet;
}
