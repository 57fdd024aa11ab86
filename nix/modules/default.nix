# All mcfleet NixOS modules; one concern per file, options under `mcfleet.*`.
# The values usually come from the fleet files through nix/lib's hostModule.
{
  imports = [
    ./base.nix
    ./users.nix
    ./podman.nix
    ./srv-dirs.nix
    ./agent.nix
    ./dns.nix
    ./firewall.nix
    ./edge.nix
    ./nix-trust.nix
    ./observe.nix
    ./python.nix
  ];
}
