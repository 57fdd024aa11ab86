# What `mcfleet plan` runs on the node beyond a NixOS system's defaults: openssl,
# to tell whether each certificate's private key is its own (from the sha256 of
# the public half `openssl pkey` derives; the key never leaves the node) and which
# certificate the node's proxy serves for each TLS route (`openssl s_client`, as a
# client would ask).  NixOS installs no openssl command by default; without one
# the plan says nothing about either rather than guess.
{
  config,
  lib,
  pkgs,
  ...
}:
{
  imports = [ ./base.nix ];

  options.mcfleet.observe.openssl = lib.mkOption {
    type = lib.types.bool;
    default = true;
    description = "Install the openssl command, which mcfleet's plan uses to check certificates and their keys on the node.";
  };

  config = lib.mkIf (config.mcfleet.enable && config.mcfleet.observe.openssl) {
    environment.systemPackages = [ pkgs.openssl ];
  };
}
