# mcfleet.enable: the switch every other mcfleet module checks.
{ lib, ... }:
{
  options.mcfleet.enable = lib.mkEnableOption "mcfleet management of this node (user, agent unit, /srv directories, resolvers, firewall)";
}
