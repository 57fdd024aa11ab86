# The edge (proxy) node: public HTTP/HTTPS ports.  The routes themselves are
# managed at runtime by mcfleet's route provider (mc-proxy, Caddy or HAProxy),
# not baked into the system closure, so a route change needs no rebuild.
{ config, lib, ... }:
let
  inherit (lib) mkOption types;
  cfg = config.mcfleet.edge;
in
{
  imports = [ ./base.nix ];

  options.mcfleet.edge = {
    enable = mkOption {
      type = types.bool;
      default = false;
      description = "This node has the edge role and terminates public routes.";
    };
    ports = mkOption {
      type = types.listOf types.port;
      default = [
        80
        443
      ];
    };
  };

  config = lib.mkIf (config.mcfleet.enable && cfg.enable) {
    networking.firewall.allowedTCPPorts = cfg.ports;
  };
}
