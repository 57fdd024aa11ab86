# Pinned system users (the `mcp` account rootless podman runs under), with
# subuid/subgid ranges, and an assertion that the final UID/GID equals the
# fleet-wide pin unless the host declares an exception.  A UID is never changed
# on a live node (seed UID incident, lesson 1): NixOS would not even apply it to
# an existing user, and rootless podman's state is keyed on the old UID.
{ config, lib, ... }:
let
  inherit (lib) mkOption types;
  cfg = config.mcfleet;
  range = types.submodule {
    options = {
      start = mkOption { type = types.ints.unsigned; };
      count = mkOption { type = types.ints.positive; };
    };
  };
  ids = types.submodule {
    options = {
      uid = mkOption { type = types.ints.unsigned; };
      gid = mkOption { type = types.ints.unsigned; };
    };
  };
  user = types.submodule (
    { name, ... }:
    {
      options = {
        uid = mkOption {
          type = types.ints.unsigned;
          description = "The UID this node has (or must have) for the account.";
        };
        gid = mkOption { type = types.ints.unsigned; };
        group = mkOption {
          type = types.str;
          default = name;
        };
        home = mkOption {
          type = types.str;
          default = "/srv/${name}";
        };
        subuid = mkOption {
          type = types.nullOr range;
          default = null;
        };
        subgid = mkOption {
          type = types.nullOr range;
          default = null;
        };
        pin = mkOption {
          type = types.nullOr ids;
          default = null;
          description = "The fleet-wide pin from fleet.json; null when the account is not pinned.";
        };
        pinException = mkOption {
          type = types.nullOr types.str;
          default = null;
          description = "Documented reason this node keeps ids that differ from the pin.";
        };
        linger = mkOption {
          type = types.bool;
          default = true;
          description = "Keep the account's systemd user manager running without a login: rootless podman needs it (and /run/user/<uid>/podman/podman.sock). NixOS turns lingering off at every activation for users not declared with linger = true.";
        };
      };
    }
  );
in
{
  imports = [ ./base.nix ];

  options.mcfleet.users = mkOption {
    type = types.attrsOf user;
    default = { };
    description = "Pinned system accounts on this node (from hosts/<name>/host.json `users`).";
  };

  config = lib.mkIf cfg.enable {
    users.users = lib.mapAttrs (_: x: {
      uid = x.uid;
      group = x.group;
      isSystemUser = true;
      home = x.home;
      linger = x.linger;
      # /srv/mcp is also a tmpfiles directory (srv-dirs.nix, mode 0750); letting
      # createHome apply its own mode (700) too would make the two fight.
      createHome = !(lib.any (d: d.path == x.home) cfg.srvDirs);
      subUidRanges = lib.optional (x.subuid != null) {
        startUid = x.subuid.start;
        count = x.subuid.count;
      };
      subGidRanges = lib.optional (x.subgid != null) {
        startGid = x.subgid.start;
        count = x.subgid.count;
      };
    }) cfg.users;

    users.groups = lib.mapAttrs' (_: x: lib.nameValuePair x.group { gid = x.gid; }) cfg.users;

    # Checked against the FINAL users.users/users.groups values, so an override
    # anywhere in the configuration (e.g. uid = 995) trips it too.
    assertions = lib.concatLists (
      lib.mapAttrsToList (
        name: x:
        let
          uid = config.users.users.${name}.uid;
          gid = config.users.groups.${x.group}.gid;
        in
        lib.optional (x.pin != null && x.pinException == null) {
          assertion = uid == x.pin.uid && gid == x.pin.gid;
          message = "mcfleet: user ${name} has uid ${toString uid} gid ${toString gid} but the fleet pins it at uid ${toString x.pin.uid} gid ${toString x.pin.gid}, and no pin exception is declared for this host.";
        }
      ) cfg.users
    );
  };
}
