# Used by flake.nix for a NixOS host that has no hosts/<name>/configuration.nix
# yet: just enough (root filesystem, boot loader, state version) for the
# toplevel to evaluate in `nix flake check`.  Every value is mkDefault, and a
# real configuration.nix replaces this file entirely.
{ lib, ... }:
{
  fileSystems."/" = lib.mkDefault {
    device = "/dev/disk/by-label/nixos";
    fsType = "ext4";
  };
  boot.loader.grub.device = lib.mkDefault "nodev";
  system.stateVersion = lib.mkDefault "24.11";
}
