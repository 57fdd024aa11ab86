# Resolvers that fail over when the fleet's DNS (MCNS) is down (incident lesson 2):
# the fleet's nameservers first, then public fallbacks, written for the mechanism
# the host resolves with (nix/lib/resolvers.nix, shared with the Debian path):
# - resolv.conf: NixOS writes networking.nameservers into /etc/resolv.conf and glibc
#   asks at most 3 of them, each `timeout` seconds, so it gets the first 3 (a
#   fallback among them) and `options timeout:1 attempts:2`;
# - systemd-resolved: networking.nameservers become resolved's global DNS=.  resolved
#   (systemd 252) waits ~5 s on each silent server before the next one, so DNS= gets
#   the public fallbacks, and names under the fleet's zone go to the fleet's
#   nameservers per link: mcfleet-dns-zone.service runs resolvectl dns/domain
#   ~<zone>/default-route no on the link that routes to each (the same unit as on
#   Debian).  No lookup outside the zone waits on a silent MCNS.
#   FallbackDNS= (services.resolved.fallbackDns) is asked only while DNS= is empty.
{ config, lib, ... }:
let
  inherit (lib) mkOption types;
  cfg = config.mcfleet.dns;
  resolvers = import ../lib/resolvers.nix;
  dns = {
    inherit (cfg) resolver nameservers fallback;
  };
  public = builtins.filter (a: !(lib.elem a cfg.nameservers)) cfg.fallback;
  routed = cfg.zone != null && resolvers.zoneRouted dns;
  zoneServers = resolvers.zoneServers dns;
  position = lib.lists.findFirstIndex (s: public != [ ] && s == lib.head public) null (resolvers.ordered dns);
in
{
  imports = [ ./base.nix ];

  options.mcfleet.dns = {
    resolver = mkOption {
      type = types.enum [
        "resolv.conf"
        "systemd-resolved"
      ];
      default = "resolv.conf";
      description = "How the host resolves: glibc reading /etc/resolv.conf, or systemd-resolved.";
    };
    nameservers = mkOption {
      type = types.listOf types.str;
      default = [ ];
    };
    fallback = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "Public resolvers outside the fleet, e.g. 1.1.1.1 and 8.8.8.8.";
    };
    zone = mkOption {
      type = types.nullOr types.str;
      default = null;
      description = "The fleet's zone: with systemd-resolved, names under it go to the nameservers (per link), every other name to the fallbacks.";
    };
    fallbackDns = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "systemd-resolved FallbackDNS= (used only while no DNS= server is configured).";
    };
  };

  config = lib.mkIf config.mcfleet.enable (
    lib.mkMerge [
      {
        networking.nameservers =
          if cfg.resolver == "systemd-resolved" && !routed then resolvers.ordered dns else resolvers.written dns;
        assertions = [
          {
            assertion = public != [ ];
            message = "mcfleet: this host has no fallback resolver outside the fleet, so it loses all DNS when MCNS is down.";
          }
          {
            assertion = cfg.resolver != "resolv.conf" || position == null || position < resolvers.glibcMaxNs;
            message = "mcfleet: glibc asks only the first ${toString resolvers.glibcMaxNs} nameservers, so this host's fallback resolver would never be asked.";
          }
        ];
      }
      {
        services.resolved.enable = lib.mkDefault (cfg.resolver == "systemd-resolved");
        assertions = [
          {
            assertion = config.services.resolved.enable == (cfg.resolver == "systemd-resolved");
            message = "mcfleet: host.json says dns.resolver = ${cfg.resolver}, but services.resolved.enable is ${lib.boolToString config.services.resolved.enable}: set the one that matches the node.";
          }
        ];
      }
      (lib.mkIf (cfg.resolver == "resolv.conf") { networking.resolvconf.extraOptions = resolvers.glibcOptions; })
      (lib.mkIf routed {
        systemd.services.mcfleet-dns-zone = {
          description = "mcfleet: resolve ${cfg.zone} through the fleet's nameservers";
          wantedBy = [ "multi-user.target" ];
          wants = [ "network-online.target" ];
          after = [
            "network-online.target"
            "systemd-resolved.service"
            "tailscaled.service"
          ];
          serviceConfig = {
            Type = "oneshot";
            RemainAfterExit = true;
            ExecStart = resolvers.zoneExec cfg.zone zoneServers;
          };
        };
      })
      (lib.mkIf (cfg.resolver == "systemd-resolved" && cfg.fallbackDns != [ ]) {
        services.resolved.fallbackDns = cfg.fallbackDns;
      })
    ]
  );
}
