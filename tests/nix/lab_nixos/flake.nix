# The lab fleet's flake for the NixOS-mechanics tier (no inputs, no nixpkgs): each NixOS
# stand-in node's toplevel is the tiny system of system.nix, and `apps.<system>.deploy` is
# the same deploy script as the repository's flake (nix/lib/deploy.nix) around this
# checkout's `mcfleet`.  The test writes the per-node files next to it.
{
  description = "mcfleet lab fleet with NixOS stand-in nodes";
  outputs =
    { self }:
    let
      system = "x86_64-linux";
      here = ./lab-nixos;
      # busybox and the agent: a folder outside the flake, locked by its NAR hash (blobs.json)
      blobsAt = builtins.fromJSON (builtins.readFile (here + "/blobs.json"));
      blobs = builtins.fetchTree {
        type = "path";
        inherit (blobsAt) path narHash;
      };
      # busybox picks its applet from argv[0] unless that is named exactly `busybox`
      busybox = "${
        builtins.path {
          path = blobs + "/busybox";
          name = "busybox-static";
        }
      }/busybox";
      mkSystem = import (here + "/system.nix") { inherit busybox system; };
      nodes = builtins.fromJSON (builtins.readFile (here + "/nodes.json"));
      deployText = (import ./nix/lib/deploy.nix).scriptText (builtins.readFile (here + "/mcfleet-path"));
      deploy = derivation {
        name = "mcfleet-deploy";
        inherit system;
        builder = busybox;
        args = [
          "sh"
          "-c"
          ''
            B=${busybox}
            { echo '#!/bin/sh'; $B cat ${builtins.toFile "deploy.sh" deployText}; } > $out
            $B chmod 0555 $out
          ''
        ];
      };
    in
    {
      nixosConfigurations = builtins.listToAttrs (
        map (name: {
          inherit name;
          value.config.system.build.toplevel = mkSystem {
            hostName = name;
            variant = nodes.${name};
            agentFile = builtins.path {
              path = blobs + "/mcp-agent";
              name = "mcp-agent";
            };
            unitFile = here + "/${name}.service";
            switchScript = here + "/switch.sh";
          };
        }) (builtins.attrNames nodes)
      );
      apps.${system}.deploy = {
        type = "app";
        program = "${deploy}";
      };
    };
}
