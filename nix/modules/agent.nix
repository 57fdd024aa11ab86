# mcp-agent.service.  Seed Phase E item #10: the unit's ExecStart is
# /srv/mcp/mcp-agent on every node, never a store path.  On NixOS that path is a
# symlink (tmpfiles `L+`) to the agent package of THIS system: the package is in
# environment.systemPackages, so the system profile keeps it alive (no garbage
# collection can delete it under the running unit), and a new agent arrives with
# a new system generation (switch restarts the unit; rollback brings the old one).
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
    package = mkOption {
      type = types.nullOr types.package;
      default = null;
      description = "The mcfleet-agent package (bin/mcp-agent); the flake sets it to packages.<system>.mcfleet-agent.";
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
        # hardening that rootless podman still allows (what it needs is left open: user/mount
        # namespaces, /dev/fuse and /dev/net/tun, procfs mounts, setuid files in images)
        CapabilityBoundingSet = "";
        ProtectKernelModules = true;
        ProtectKernelLogs = true;
        RestrictRealtime = true;
        LockPersonality = true;
        SystemCallArchitectures = "native";
        UMask = "0027";
        KeyringMode = "private";
      };
      restartTriggers = lib.optional (cfg.package != null) cfg.package;
    };

    environment.systemPackages = lib.optional (cfg.package != null) cfg.package;
    systemd.tmpfiles.rules = lib.optional (cfg.package != null) "L+ ${cfg.execStart} - - - - ${cfg.package}/bin/mcp-agent";

    assertions = [
      {
        assertion = !(lib.hasPrefix "/nix/store/" cfg.execStart);
        message = "mcfleet: mcfleet.agent.execStart points into the Nix store, but the agent binary must live outside it (seed item #10: /srv/mcp/mcp-agent).";
      }
    ];
  };
}
