# Ports opened to the network: declared firewall_ports, the agent's listen
# port and fixed publishes not bound to loopback (see nix/lib/derive.nix).
{ config, lib, ... }:
let
  inherit (lib) mkOption types;
in
{
  imports = [ ./base.nix ];

  options.mcfleet.firewall = {
    tcp = mkOption {
      type = types.listOf types.port;
      default = [ ];
    };
    udp = mkOption {
      type = types.listOf types.port;
      default = [ ];
    };
  };

  config = lib.mkIf config.mcfleet.enable {
    networking.firewall.allowedTCPPorts = config.mcfleet.firewall.tcp;
    networking.firewall.allowedUDPPorts = config.mcfleet.firewall.udp;
  };
}
