# Rootless podman for the agent's containers (the subuid/subgid ranges come
# from users.nix).  NixOS's podman module enables the per-user podman.socket;
# the agent user needs linger so that its user manager (and with it
# /run/user/<uid>/podman/podman.sock) runs without a login session.  Without
# `linger = true` NixOS disables lingering at every activation.
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
    users.users.${config.mcfleet.agent.user}.linger = true;
  };
}
