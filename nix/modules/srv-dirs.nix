# /srv/<svc> directories (and /srv/mcp for the agent), created by tmpfiles and
# owned by the agent user: service data lives there, outside the Nix store.
{ config, lib, ... }:
let
  inherit (lib) mkOption types;
in
{
  imports = [ ./base.nix ];

  options.mcfleet.srvDirs = mkOption {
    type = types.listOf (
      types.submodule {
        options = {
          path = mkOption { type = types.str; };
          owner = mkOption {
            type = types.str;
            default = "mcp";
          };
          group = mkOption {
            type = types.str;
            default = "mcp";
          };
          mode = mkOption {
            type = types.str;
            default = "0750";
          };
        };
      }
    );
    default = [ ];
    description = "Directories under /srv to create for the agent and each service.";
  };

  config = lib.mkIf config.mcfleet.enable {
    systemd.tmpfiles.rules = map (d: "d ${d.path} ${d.mode} ${d.owner} ${d.group} -") config.mcfleet.srvDirs;
  };
}
