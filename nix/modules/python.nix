# What `mcfleet apply` runs on the node as root beyond a NixOS system's defaults: python3.
# Root's file helper runs under it (a declared file, a certificate and its key, HAProxy's map file:
# each written without following a link), and so does the relay that reaches the agent's and the
# proxies' root-only sockets through a sudo/doas login.  NixOS puts no python3 on PATH by default,
# and the agent's own interpreter sits in its closure, not on PATH.  The default is the python3 the
# agent package is built with, so the system closure holds no second interpreter; at low priority,
# so a python3 the host installs itself wins.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types;
  cfg = config.mcfleet.python;
in
{
  imports = [ ./base.nix ];

  options.mcfleet.python = {
    enable = mkOption {
      type = types.bool;
      default = true;
      description = "Install python3, which mcfleet's apply runs on the node as root (its file helper, and the socket relay through a sudo/doas login).";
    };
    package = mkOption {
      type = types.package;
      default = pkgs.python3;
      defaultText = lib.literalExpression "pkgs.python3";
      description = "The python3 to install (standard library only is used; 3.10 or later).";
    };
  };

  config = lib.mkIf (config.mcfleet.enable && cfg.enable) {
    environment.systemPackages = [ (lib.lowPrio cfg.package) ];
  };
}
