# Resolvers that fail over when the fleet's DNS (MCNS) is down (incident lesson 2):
# the fleet's nameservers first, then public fallbacks, written for the mechanism
# the host resolves with (nix/lib/resolvers.nix, shared with the Debian path):
# - resolv.conf: NixOS writes networking.nameservers into /etc/resolv.conf and glibc
#   asks at most 3 of them, each `timeout` seconds, so it gets the first 3 (a
#   fallback among them) and `options timeout:1 attempts:2`;
# - systemd-resolved: networking.nameservers become resolved's DNS=, which switches
#   to the next server when one does not answer, so every server goes there;
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
    fallbackDns = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "systemd-resolved FallbackDNS= (used only while no DNS= server is configured).";
    };
  };

  config = lib.mkIf config.mcfleet.enable (
    lib.mkMerge [
      {
        networking.nameservers = resolvers.written dns;
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
      (lib.mkIf (cfg.resolver == "systemd-resolved" && cfg.fallbackDns != [ ]) {
        services.resolved.fallbackDns = cfg.fallbackDns;
      })
    ]
  );
}
