# mcp-agent.service.  Seed Phase E item #10: NixOS owns the user, the unit and
# the directories, NOT the binary: ExecStart is /srv/mcp/mcp-agent, which
# `mcfleet` pushes and upgrades on every node alike (NixOS and Debian).
{ config, lib, ... }:
let
  inherit (lib) mkOption types;
  cfg = config.mcfleet.agent;
in
{
  imports = [ ./base.nix ];

  options.mcfleet.agent = {
    enable = mkOption {
      type = types.bool;
      default = true;
    };
    unitName = mkOption {
      type = types.str;
      default = "mcp-agent.service";
    };
    execStart = mkOption {
      type = types.str;
      default = "/srv/mcp/mcp-agent";
    };
    user = mkOption {
      type = types.str;
      default = "mcp";
    };
    group = mkOption {
      type = types.str;
      default = "mcp";
    };
    workingDirectory = mkOption {
      type = types.str;
      default = "/srv/mcp";
    };
    description = mkOption {
      type = types.str;
      default = "mcp-agent: mcfleet node agent";
    };
    readWritePaths = mkOption {
      type = types.listOf types.str;
      default = [ "/srv/mcp" ];
    };
  };

  config = lib.mkIf (config.mcfleet.enable && cfg.enable) {
    systemd.services.${lib.removeSuffix ".service" cfg.unitName} = {
      description = cfg.description;
      wantedBy = [ "multi-user.target" ];
      after = [ "network-online.target" ];
      wants = [ "network-online.target" ];
      serviceConfig = {
        ExecStart = cfg.execStart;
        User = cfg.user;
        Group = cfg.group;
        WorkingDirectory = cfg.workingDirectory;
        Restart = "always";
        RestartSec = 5;
        NoNewPrivileges = true;
        ProtectSystem = "strict";
        ReadWritePaths = cfg.readWritePaths;
      };
    };

    assertions = [
      {
        assertion = !(lib.hasPrefix "/nix/store/" cfg.execStart);
        message = "mcfleet: mcfleet.agent.execStart points into the Nix store, but the agent binary must live outside it (seed item #10: /srv/mcp/mcp-agent).";
      }
    ];
  };
}
