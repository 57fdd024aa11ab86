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

      # hosts/<name>/configuration.nix of the fleet folder when present; otherwise
      # eval-only defaults (root filesystem, boot loader, stateVersion) so the toplevel
      # evaluates before the host's hardware configuration is committed.
      hostConfig =
        fleetDir: name:
        let
          path = fleetDir + "/hosts/${name}/configuration.nix";
        in
        if builtins.pathExists path then path else ./nix/modules/eval-defaults.nix;

      # One NixOS system from an evaluated fleet folder (mcfleetLib.forRoot), so that
      # building every host of a fleet reads and checks its files once.
      systemOf =
        evaluated:
        {
          fleet,
          name,
          system ? null,
          nixpkgs ? self.inputs.nixpkgs,
          modules ? [ ],
        }:
        let
          hosts = builtins.attrNames evaluated.hosts;
          host =
            if !(evaluated.hosts ? ${name}) then
              throw "mcfleet.lib.mkNixosSystem: ${toString fleet}/hosts has no host named '${name}' (hosts: ${builtins.concatStringsSep ", " hosts}); the name is host.json's \"name\""
            else if evaluated.hosts.${name}.os != "nixos" then
              throw "mcfleet.lib.mkNixosSystem: host '${name}' of ${toString fleet} has \"os\": \"${evaluated.hosts.${name}.os}\" in its host.json; only NixOS hosts get a NixOS system"
            else
              evaluated.hosts.${name};
          hostSystem = if system == null then host.system else system;
        in
        # the host is checked first: a wrong name is reported without fetching nixpkgs
        builtins.seq host nixpkgs.lib.nixosSystem {
          system = hostSystem;
          modules = [
            self.nixosModules.default
            (mcfleetLib.hostModuleOf evaluated name)
            (hostConfig fleet name)
            # The agent is part of the system closure: /srv/mcp/mcp-agent links into it.
            # It is built from this flake's source (root), not from the fleet folder.
            {
              mcfleet.agent.package =
                (import ./nix/packages {
                  pkgs = nixpkgs.legacyPackages.${hostSystem};
                  src = root;
                }).mcfleet-agent;
            }
          ] ++ modules;
        };

      # mkNixosSystem { fleet = ./.; name = "rift"; }: the NixOS system of one host of a
      # fleet folder (yours: fleet.json + hosts/<name>/host.json [+ configuration.nix]).
      # Optional: system (default from host.json's arch), nixpkgs (default: mcfleet's
      # pinned one), modules (added to the host's modules).
      mkNixosSystem = args: systemOf (mcfleetLib.forRoot (args.fleet or root)) ({ fleet = root; } // args);

      # mkNixosConfigurations { fleet = ./.; }: nixosConfigurations for every host whose
      # host.json says "os": "nixos" (same optional nixpkgs and modules for all).
      mkNixosConfigurations =
        {
          fleet ? root,
          nixpkgs ? self.inputs.nixpkgs,
          modules ? [ ],
        }:
        let
          evaluated = mcfleetLib.forRoot fleet;
        in
        builtins.listToAttrs (
          map (name: {
            inherit name;
            value = systemOf evaluated {
              inherit
                fleet
                name
                nixpkgs
                modules
                ;
            };
          }) evaluated.nixosHosts
        );

      # mkFleetChecks { fleet = ./.; }: checks.<system>.fleet for a fleet folder, the pure
      # rules (builtins only, no nixpkgs): `nix build .#checks.x86_64-linux.fleet` fails
      # with the findings, as `mcfleet validate` reports them.
      mkFleetChecks =
        { fleet }: forSystems (system: { fleet = mcfleetLib.fleetCheck { inherit system; root = fleet; }; });
    in
    {
      # Pure Nix (builtins only): the fleet as values, derived per-host values,
      # rule findings; plus the helpers used by the outputs below.
      lib = mcfleetLib // {
        inherit (fleet) findings hosts nixosHosts valid report;
        inherit mkNixosSystem mkNixosConfigurations mkFleetChecks;
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

      nixosConfigurations = mkNixosConfigurations { fleet = root; };

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

      # `nix develop`: the mcfleet CLI, nix, and what the test suite and the linters run
      # (the Python dependencies, pytest, ruff, mypy, and the real peers the tests start).
      devShells = forSystems (system: {
        default = import ./nix/packages/dev-shell.nix {
          pkgs = pkgsFor system;
          inherit (packagesFor system) mcfleet;
        };
      });

      # `nix flake init -t <mcfleet>`: a new fleet folder (fleet.json, one NixOS host)
      # with a flake.nix that takes mcfleet as an input.
      templates = {
        default = {
          path = ./nix/templates/fleet;
          description = "A fleet managed with mcfleet: fleet.json, one NixOS host, flake.nix wiring mcfleet";
        };
      };

      formatter = forSystems (system: (pkgsFor system).nixfmt-rfc-style);
    };
}
