# Who may push store paths to this node with `nix copy` (hosts/<name>/host.json
# `nix.trust`): a signing key the node trusts (trust = signed: the public keys go
# into extra-trusted-public-keys), or the SSH user as a nix trusted user (trust =
# trusted-user).  `extra-` settings add to NixOS' defaults (root, cache.nixos.org's
# key) instead of replacing them.
{ config, lib, ... }:
let
  inherit (lib) mkOption types;
  cfg = config.mcfleet.nixTrust;
in
{
  imports = [ ./base.nix ];

  options.mcfleet.nixTrust = {
    trustedUsers = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "Users whose unsigned pushes the nix daemon accepts (nix.trust = trusted-user).";
    };
    publicKeys = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "Signing public keys ('name:base64') whose signed pushes the daemon accepts (nix.trust = signed).";
    };
  };

  config = lib.mkIf config.mcfleet.enable {
    nix.settings = lib.mkMerge [
      (lib.mkIf (cfg.trustedUsers != [ ]) { extra-trusted-users = cfg.trustedUsers; })
      (lib.mkIf (cfg.publicKeys != [ ]) { extra-trusted-public-keys = cfg.publicKeys; })
    ];
  };
}
