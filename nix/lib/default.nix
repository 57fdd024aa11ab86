# mcfleet's pure Nix library: builtins only, no nixpkgs.
#
#   let mcfleet = import ./nix/lib; in (mcfleet.forRoot ./.).findings
#
# This is what makes `nix flake check` meaningful where nixpkgs cannot be
# fetched: the fleet files are loaded, the per-host values derived and the
# fleet rules checked with the same codes as `mcfleet validate`.
let
  u = import ./util.nix;
  load = import ./load.nix;
  derive = import ./derive.nix;
  rules = import ./rules.nix;
in
rec {
  inherit (load) loadFleet;
  inherit derive;
  ruleCodes = rules.codes;

  # The same text as Python's Finding.format().
  formatFinding =
    f: "${f.code}: ${f.file}${if f.pointer != "" then "#" + f.pointer else ""}: ${f.message}\n  hint: ${f.hint}";

  # Everything about one fleet folder: loaded data, findings, derived per-host values.
  forRoot =
    root:
    let
      fleet = loadFleet root;
      findings = rules.check fleet;
    in
    {
      inherit fleet findings;
      valid = findings == [ ];
      report = builtins.concatStringsSep "\n" (map formatFinding findings);
      hosts = derive.hosts fleet;
      nixosHosts = builtins.filter (n: fleet.hosts.${n}.data.os == "nixos") (
        builtins.sort builtins.lessThan (builtins.attrNames fleet.hosts)
      );
    };

  # checks.<system>.fleet: evaluation fails with the findings when the fleet is
  # invalid; otherwise a tiny derivation built by /bin/sh (present on Debian and
  # inside the Nix sandbox), so it builds with no nixpkgs at all.
  fleetCheck =
    { system, root }:
    let
      r = forRoot root;
      count = builtins.length r.findings;
    in
    if !r.valid then
      throw "mcfleet: the fleet is invalid (${toString count} finding${if count == 1 then "" else "s"}):\n${r.report}"
    else
      builtins.derivation {
        name = "mcfleet-fleet-check";
        inherit system;
        builder = "/bin/sh";
        args = [
          "-c"
          ''printf '%s\n' "$summary" > "$out"''
        ];
        summary =
          let
            names = builtins.attrNames r.hosts;
            n = builtins.length names;
          in
          "ok: ${toString n} host${if n == 1 then "" else "s"} valid (${builtins.concatStringsSep ", " names}); rules: ${builtins.concatStringsSep " " rules.codes}";
      };

  # A NixOS module carrying one host's derived values into the mcfleet.* options
  # (nix/modules/ turns those into users, units, directories, resolvers, ports).
  hostModule = root: hostModuleOf (forRoot root);

  # The same from an evaluated fleet folder (forRoot's result), so that the modules of
  # every host of a fleet share one reading of its files.
  hostModuleOf =
    r: name:
    let
      h = r.hosts.${name};
    in
    {
      networking.hostName = name;
      mcfleet = {
        enable = true;
        users = builtins.mapAttrs (_: x: {
          inherit (x) uid gid group home pin pinException;
          subuid = x.subuid;
          subgid = x.subgid;
        }) h.users;
        dns = {
          inherit (r.fleet.hosts.${name}.data.dns) resolver nameservers fallback;
          fallbackDns = r.fleet.hosts.${name}.data.dns.fallback_dns;
          inherit (r.fleet.fleet) zone;
        };
        agent = {
          inherit (h.agentUnit) execStart user group workingDirectory description readWritePaths;
          unitName = h.agentUnit.name;
        };
        srvDirs = h.srvDirs;
        firewall = {
          inherit (h.firewall) tcp udp;
        };
        edge.enable = h.edge;
        nixTrust = h.nixTrust;
      };
    };
}
