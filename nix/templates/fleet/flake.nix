# A fleet managed with mcfleet (from `nix flake init -t <mcfleet>`).
#
#   fleet.json                   the fleet: DNS zone, pinned accounts
#   hosts/node1/host.json        one host: OS, arch, roles, SSH, addresses, users, DNS
#   hosts/node1/configuration.nix   (add it) the host's own NixOS configuration:
#                                   hardware, file systems, boot loader
#
#   mcfleet validate             the fleet rules (also: nix build .#checks.x86_64-linux.fleet)
#   mcfleet schema dump          JSON Schemas in schemas/ for your editor ("$schema" in the files)
#   nix develop                  a shell with mcfleet and nix
#   nix run .#deploy -- node1    validate, plan and apply node1
{
  description = "A fleet managed with mcfleet";

  # Where you get mcfleet from (a git URL, github:<owner>/mcfleet, or a local checkout with
  # `--override-input mcfleet path:/path/to/mcfleet`).  Its nixpkgs pin is used for the
  # hosts unless you pass `nixpkgs` to mkNixosConfigurations.
  inputs.mcfleet.url = "github:OWNER/mcfleet";

  outputs =
    { self, mcfleet }:
    {
      # One NixOS system per host whose host.json says "os": "nixos": the mcfleet
      # modules (pinned users, resolvers with fallbacks, the agent unit, /srv folders,
      # firewall) from the host's files, plus hosts/<name>/configuration.nix.
      nixosConfigurations = mcfleet.lib.mkNixosConfigurations { fleet = ./.; };

      # The fleet rules in pure Nix (no nixpkgs needed): the build fails with the findings.
      checks = mcfleet.lib.mkFleetChecks { fleet = ./.; };

      # What mcfleet derives for each host (`nix eval .#lib.hosts.node1 --json`).
      lib = {
        inherit (mcfleet.lib.forRoot ./.) hosts findings;
      };

      inherit (mcfleet) devShells apps;
    };
}
