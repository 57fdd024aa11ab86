# T2: declared stand-ins for exactly the NixOS options nix/modules sets, so the
# modules can be evaluated with nixpkgs' real module system (lib.evalModules)
# without all of NixOS.  Each type is copied from the NixOS declaration named in
# the comment (nixos-24.11): a wrong type or a misspelt option in nix/modules
# fails here just as it would in nixosSystem.
{ lib, ... }:
let
  inherit (lib) mkOption types;

  # nixos/lib/systemd-unit-options.nix: unitOption
  unitOption = lib.mkOptionType {
    name = "systemd option";
    merge =
      loc: defs:
      let
        defs' = lib.filterOverrides defs;
      in
      if lib.any (def: lib.isList def.value) defs' then
        lib.concatMap (def: lib.toList def.value) defs'
      else
        lib.mergeEqualOption loc defs';
  };
  # nixos/lib/systemd-lib.nix: unitNameType
  unitNameType = types.strMatching "[a-zA-Z0-9@%:_.\\-]+[.](service|socket|device|mount|automount|swap|target|path|timer|scope|slice)";

  # nixos/modules/config/users-groups.nix: subordinateUidRange / subordinateGidRange
  subordinateUidRange.options = {
    startUid = mkOption { type = types.int; };
    count = mkOption {
      type = types.int;
      default = 1;
    };
  };
  subordinateGidRange.options = {
    startGid = mkOption { type = types.int; };
    count = mkOption {
      type = types.int;
      default = 1;
    };
  };
in
{
  # nixos/modules/misc/nixpkgs.nix gives every module `pkgs`; here only the packages nix/modules takes
  # from it, as derivation-shaped values (nothing is built in T2)
  config._module.args.pkgs = {
    openssl = {
      type = "derivation";
      name = "openssl-3.0.15";
      outPath = "/nix/store/00000000000000000000000000000000-openssl-3.0.15-bin";
    };
    python3 = {
      type = "derivation";
      name = "python3-3.11.9";
      outPath = "/nix/store/00000000000000000000000000000000-python3-3.11.9";
    };
  };

  options = {
    # nixos/modules/misc/assertions.nix
    assertions = mkOption {
      type = types.listOf types.unspecified;
      internal = true;
      default = [ ];
    };

    # nixos/modules/config/users-groups.nix: userOpts (the options mcfleet sets)
    users.users = mkOption {
      default = { };
      type = types.attrsOf (
        types.submodule {
          options = {
            uid = mkOption {
              type = with types; nullOr int;
              default = null;
            };
            isSystemUser = mkOption {
              type = types.bool;
              default = false;
            };
            group = mkOption {
              type = types.str;
              default = "";
            };
            home = mkOption {
              type = types.passwdEntry types.path;
              default = "/var/empty";
            };
            createHome = mkOption {
              type = types.bool;
              default = false;
            };
            subUidRanges = mkOption {
              type = with types; listOf (submodule subordinateUidRange);
              default = [ ];
            };
            subGidRanges = mkOption {
              type = with types; listOf (submodule subordinateGidRange);
              default = [ ];
            };
            linger = mkOption {
              type = types.bool;
              default = false;
            };
          };
        }
      );
    };
    # users-groups.nix: groupOpts.gid
    users.groups = mkOption {
      default = { };
      type = types.attrsOf (
        types.submodule {
          options.gid = mkOption {
            type = with types; nullOr int;
            default = null;
          };
        }
      );
    };

    # nixos/modules/virtualisation/podman/default.nix
    virtualisation.podman.enable = mkOption {
      type = types.bool;
      default = false;
    };

    # nixos/modules/system/boot/systemd/tmpfiles.nix
    systemd.tmpfiles.rules = mkOption {
      type = types.listOf types.str;
      default = [ ];
    };

    # nixos/modules/system/boot/systemd.nix + nixos/lib/systemd-unit-options.nix
    systemd.services = mkOption {
      default = { };
      type = types.attrsOf (
        types.submodule {
          options = {
            description = mkOption {
              type = types.singleLineStr;
              default = "";
            };
            wantedBy = mkOption {
              type = types.listOf unitNameType;
              default = [ ];
            };
            after = mkOption {
              type = types.listOf unitNameType;
              default = [ ];
            };
            wants = mkOption {
              type = types.listOf unitNameType;
              default = [ ];
            };
            serviceConfig = mkOption {
              type = types.attrsOf unitOption;
              default = { };
            };
            restartTriggers = mkOption {
              type = types.listOf types.unspecified;
              default = [ ];
            };
          };
        }
      );
    };

    # nixos/modules/config/system-path.nix
    environment.systemPackages = mkOption {
      type = types.listOf types.package;
      default = [ ];
    };

    # nixos/modules/config/nix.nix: nix.settings (a freeform submodule of nix.conf settings)
    nix.settings = mkOption {
      default = { };
      type = types.submodule {
        freeformType =
          let
            confAtom = types.nullOr (types.oneOf [ types.bool types.int types.float types.str types.path types.package ]);
          in
          types.attrsOf (types.either confAtom (types.listOf confAtom));
        options.trusted-users = mkOption {
          type = types.listOf types.str;
          default = [ "root" ];
        };
        options.trusted-public-keys = mkOption {
          type = types.listOf types.str;
          default = [ "cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=" ];
        };
      };
    };

    # nixos/modules/tasks/network-interfaces.nix
    networking.hostName = mkOption {
      type = types.strMatching "^$|^[[:alnum:]]([[:alnum:]_-]{0,61}[[:alnum:]])?$";
      default = "nixos";
    };
    networking.nameservers = mkOption {
      type = types.listOf types.str;
      default = [ ];
    };

    # nixos/modules/config/resolvconf.nix
    networking.resolvconf.extraOptions = mkOption {
      type = types.listOf types.str;
      default = [ ];
    };

    # nixos/modules/system/boot/resolved.nix
    services.resolved.enable = mkOption {
      type = types.bool;
      default = false;
    };
    services.resolved.fallbackDns = mkOption {
      type = types.nullOr (types.listOf types.str);
      default = null;
    };

    # nixos/modules/services/networking/firewall.nix (commonOptions)
    networking.firewall.allowedTCPPorts = mkOption {
      type = types.listOf types.port;
      default = [ ];
    };
    networking.firewall.allowedUDPPorts = mkOption {
      type = types.listOf types.port;
      default = [ ];
    };
  };
}
