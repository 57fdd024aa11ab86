# T2: evaluate nix/modules for one host of a fleet with nixpkgs' lib.evalModules
# and the NixOS stand-ins; returns the config values the tests check.
{
  nixpkgsLib, # path of nixpkgs' lib/ (MCFLEET_NIXPKGS_LIB)
  repo, # this repository (nix/lib, nix/modules)
  fleetRoot ? repo,
  host,
  extraModules ? [ ],
}:
let
  lib = import nixpkgsLib;
  mcfleet = import (repo + "/nix/lib");
  evaluated = lib.evalModules {
    modules = [
      ./nixos-stand-ins.nix
      (repo + "/nix/modules")
      (mcfleet.hostModule fleetRoot host)
    ] ++ extraModules;
  };
  cfg = evaluated.config;
in
{
  failedAssertions = map (a: a.message) (builtins.filter (a: !a.assertion) cfg.assertions);
  users = cfg.users.users;
  groups = cfg.users.groups;
  inherit (cfg.networking) hostName nameservers;
  resolved = cfg.services.resolved.enable;
  resolvconfOptions = cfg.networking.resolvconf.extraOptions;
  firewall = {
    inherit (cfg.networking.firewall) allowedTCPPorts allowedUDPPorts;
  };
  podman = cfg.virtualisation.podman.enable;
  tmpfiles = cfg.systemd.tmpfiles.rules;
  services = cfg.systemd.services;
  nixSettings = cfg.nix.settings;
  systemPackages = map (p: p.name) cfg.environment.systemPackages;
  # buildEnv's priority of each (lower wins a clash of two packages' files; 5 when not set)
  packagePriorities = builtins.listToAttrs (
    map (p: {
      inherit (p) name;
      value = p.meta.priority or 5;
    }) cfg.environment.systemPackages
  );
}
