# Rootless podman for the agent's containers (the subuid/subgid ranges come
# from users.nix).
{ config, lib, ... }:
{
  imports = [ ./base.nix ];

  options.mcfleet.podman.enable = lib.mkOption {
    type = lib.types.bool;
    default = true;
    description = "Install podman for rootless containers run by the agent user.";
  };

  config = lib.mkIf (config.mcfleet.enable && config.mcfleet.podman.enable) {
    virtualisation.podman.enable = true;
  };
}
