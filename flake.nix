{
  description = "mcfleet: declarative fleet toolkit (pure fleet checks, NixOS modules, packages, deploy app)";

  # nixpkgs is locked (flake.lock) to a published revision of the nixos-24.11
  # release branch: 50ab793786d9de88ee30ec4e4c24fb4236fc2674, lastModified
  # 1751274312 (2025-06-30, the day 24.11 reached end of life), narHash
  # sha256-/bVBlRpECLVzjV19t5KMdMFWSwKLtb5RyXdjz3LJT+g=.  Why this one:
  #  - a closed release branch never moves again, so the pin is a real,
  #    immutable point that anyone can fetch and check;
  #  - it is a release Debian 12's nix-bin 2.8 can still evaluate: its
  #    lib/minver.nix asks for Nix >= 2.3.17, and nixpkgs' lib only stopped
  #    evaluating on 2.8 during 25.11 development (nixpkgs.lib ee9522ca is the
  #    last commit that works, the one T2 uses);
  #  - it ships pydantic 2, typer, asyncssh, grpcio, podman-py and acme, which
  #    nix/packages/mcfleet.nix needs.
  # The (rev, narHash) pair was not computed here (nixpkgs cannot be fetched on
  # the build machine).  The same pair appears in the flake.lock excerpts of
  # several independent public repositories (lab reports of different students
  # of one DevOps course, e.g. scruffyscarf/DevOps-Core-Course, each from its
  # own `nix flake lock`), and as the sha256 of a fetchTarball of that rev in
  # another project; a wrong narHash would make those builds fail.  Nix 2.8
  # reads this lock (version 7) as is and fetches inputs lazily, so every
  # output that does not touch nixpkgs (lib, nixosModules, checks.<system>.fleet,
  # the attribute names of the others) evaluates offline.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-24.11";

  outputs =
    { self, nixpkgs }:
    let
      mcfleetLib = import ./nix/lib;
      deploy = import ./nix/lib/deploy.nix;
      root = ./.;
      fleet = mcfleetLib.forRoot root;

      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      # One attribute per system, built with listToAttrs: Nix 2.8 cannot merge
      # two `packages.${system}.x = …` definitions with a dynamic key.
      forSystems =
        f:
        builtins.listToAttrs (
          map (system: {
            name = system;
            value = f system;
          }) systems
        );
      pkgsFor = system: nixpkgs.legacyPackages.${system};
      packagesFor = system: import ./nix/packages {
        pkgs = pkgsFor system;
        src = root;
      };

      # hosts/<name>/configuration.nix when present; otherwise eval-only defaults
      # (root filesystem, boot loader, stateVersion) so the toplevel evaluates
      # before the host's hardware configuration is committed.
      hostConfig =
        name:
        let
          path = root + "/hosts/${name}/configuration.nix";
        in
        if builtins.pathExists path then path else ./nix/modules/eval-defaults.nix;

      mkNixosSystem =
        {
          name,
          system ? fleet.hosts.${name}.system,
          nixpkgs ? self.inputs.nixpkgs,
        }:
        nixpkgs.lib.nixosSystem {
          inherit system;
          modules = [
            self.nixosModules.default
            (mcfleetLib.hostModule root name)
            (hostConfig name)
            # The agent is part of the system closure: /srv/mcp/mcp-agent links into it.
            {
              mcfleet.agent.package =
                (import ./nix/packages {
                  pkgs = nixpkgs.legacyPackages.${system};
                  src = root;
                }).mcfleet-agent;
            }
          ];
        };
    in
    {
      # Pure Nix (builtins only): the fleet as values, derived per-host values,
      # rule findings; plus the helpers used by the outputs below.
      lib = mcfleetLib // {
        inherit (fleet) findings hosts nixosHosts valid report;
        inherit mkNixosSystem;
        deployScriptText = deploy.scriptText;
      };

      # Each module is an attribute set that imports its file by path: `nix flake
      # check` (2.8) wants a function or attrset, not a bare path, and importing by
      # path keeps the module system's de-duplication (default + users is fine).
      nixosModules = builtins.mapAttrs (_: path: {
        _file = path;
        imports = [ path ];
      }) {
        default = ./nix/modules;
        base = ./nix/modules/base.nix;
        users = ./nix/modules/users.nix;
        podman = ./nix/modules/podman.nix;
        srv-dirs = ./nix/modules/srv-dirs.nix;
        agent = ./nix/modules/agent.nix;
        dns = ./nix/modules/dns.nix;
        firewall = ./nix/modules/firewall.nix;
        edge = ./nix/modules/edge.nix;
        nix-trust = ./nix/modules/nix-trust.nix;
      };

      nixosConfigurations = builtins.listToAttrs (
        map (name: {
          inherit name;
          value = mkNixosSystem { inherit name; };
        }) fleet.nixosHosts
      );

      packages = forSystems (system: {
        inherit (packagesFor system)
          mcfleet
          mcfleet-agent
          default
          ;
      });

      apps = forSystems (
        system:
        let
          app = {
            type = "app";
            program = "${(packagesFor system).deploy}/bin/mcfleet-deploy";
          };
        in
        {
          deploy = app;
          default = app;
        }
      );

      checks = forSystems (
        system:
        {
          # Pure: builds with no nixpkgs; evaluation fails with the findings.
          fleet = mcfleetLib.fleetCheck { inherit system root; };
          # The Python validator on the same files (needs nixpkgs for Python).
          validate = (pkgsFor system).runCommand "mcfleet-validate" {
            nativeBuildInputs = [ (packagesFor system).mcfleet ];
          } "mcfleet validate ${root} && touch $out";
        }
        // builtins.listToAttrs (
          map (name: {
            name = "toplevel-${name}";
            value = self.nixosConfigurations.${name}.config.system.build.toplevel;
          }) (builtins.filter (name: fleet.hosts.${name}.system == system) fleet.nixosHosts)
        )
      );

      formatter = forSystems (system: (pkgsFor system).nixfmt-rfc-style);
    };
}
