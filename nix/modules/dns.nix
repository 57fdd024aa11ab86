# Resolvers: the fleet's own (MCNS) first, then public fallbacks that work
# when MCNS is down (seed UID incident, lesson 2: DNS must not be a single point
# of failure).
{ config, lib, ... }:
let
  inherit (lib) mkOption types;
  cfg = config.mcfleet.dns;
in
{
  imports = [ ./base.nix ];

  options.mcfleet.dns = {
    nameservers = mkOption {
      type = types.listOf types.str;
      default = [ ];
    };
    fallback = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "Public resolvers outside the fleet, e.g. 1.1.1.1 and 8.8.8.8.";
    };
  };

  config = lib.mkIf config.mcfleet.enable {
    networking.nameservers = lib.unique (cfg.nameservers ++ cfg.fallback);
    assertions = [
      {
        assertion = lib.any (a: !(lib.elem a cfg.nameservers)) cfg.fallback;
        message = "mcfleet: this host has no fallback resolver outside the fleet, so it loses all DNS when MCNS is down.";
      }
    ];
  };
}
