# Per-host values derived from the fleet files: what the NixOS modules set and
# what python/mcfleet/nix/derived.py computes for the same host (a T1 test
# compares the two).  Seed Phase E item #10: NixOS owns the user, the unit and
# the directories; the agent binary lives at /srv/mcp/mcp-agent, outside the store.
let
  u = import ./util.nix;
  resolvers = import ./resolvers.nix;

  isLoopback = ip: ip != null && (u.hasPrefix "127." ip || ip == "::1" || ip == "localhost");
in
rec {
  # users: { <name> = { uid; gid; group; home; subuid; subgid; pin; pinException; }; }
  # `pin` is the fleet-wide pin (or null); the module asserts uid/gid against it.
  users =
    fleet: entry:
    builtins.mapAttrs (name: x: {
      inherit (x) uid gid subuid subgid;
      group = name;
      home = "/srv/${name}";
      pin =
        if fleet.fleet.pins ? ${name} then
          {
            inherit (fleet.fleet.pins.${name}) uid gid;
          }
        else
          null;
      pinException = x.pin_exception;
    }) entry.data.users;

  # Fleet resolvers first, then the public fallbacks (a node that asks only the fleet's
  # resolvers loses every name when they die), each once, as many as the host's resolver
  # asks (glibc: 3); see resolvers.nix.
  nameservers = entry: resolvers.written entry.data.dns;

  agentUnit =
    entry:
    let
      a = entry.data.agent;
    in
    {
      name = a.unit;
      description = "mcp-agent: mcfleet node agent";
      execStart = a.path;
      user = a.user;
      group = a.user;
      workingDirectory = dirOf a.path;
      restart = "always";
      restartSec = 5;
      after = [ "network-online.target" ];
      wants = [ "network-online.target" ];
      wantedBy = [ "multi-user.target" ];
      readWritePaths = [ (dirOf a.path) ];
    };

  # The unit file exactly as Python renders it (python/mcfleet/nix/derived.py).
  agentUnitText =
    entry:
    let
      x = agentUnit entry;
    in
    builtins.concatStringsSep "\n" [
      "[Unit]"
      "Description=${x.description}"
      "After=${builtins.concatStringsSep " " x.after}"
      "Wants=${builtins.concatStringsSep " " x.wants}"
      ""
      "[Service]"
      "ExecStart=${x.execStart}"
      "User=${x.user}"
      "Group=${x.group}"
      "WorkingDirectory=${x.workingDirectory}"
      "Restart=${x.restart}"
      "RestartSec=${toString x.restartSec}"
      "NoNewPrivileges=true"
      "ProtectSystem=strict"
      "ReadWritePaths=${builtins.concatStringsSep " " x.readWritePaths}"
      "CapabilityBoundingSet="
      "ProtectKernelModules=true"
      "ProtectKernelLogs=true"
      "RestrictRealtime=true"
      "LockPersonality=true"
      "SystemCallArchitectures=native"
      "UMask=0027"
      "KeyringMode=private"
      ""
      "[Install]"
      "WantedBy=${builtins.concatStringsSep " " x.wantedBy}"
      ""
    ];

  # The agent's folder and the host side of every active service's volume under
  # /srv/ (sgardd mounts /srv/sgard, not /srv/sgardd), owned by the agent user.
  srvDirs =
    entry:
    let
      owner = entry.data.agent.user;
      agentDir = dirOf entry.data.agent.path;
      sources = u.concatMap (s: u.concatMap (c: map (v: builtins.head (u.splitOn ":" v)) c.volumes) s.data.components) (
        builtins.filter (s: s.data.active) entry.services
      );
      svcDirs = builtins.filter (p: u.hasPrefix "/srv/" p) sources;
    in
    map (path: {
      inherit path owner;
      group = owner;
      mode = "0750";
    }) (builtins.sort builtins.lessThan (u.unique ([ agentDir ] ++ svcDirs)));

  tmpfiles = entry: map (d: "d ${d.path} ${d.mode} ${d.owner} ${d.group} -") (srvDirs entry);

  # What every host's values need from the whole fleet, computed once for all hosts
  # (recomputing it per host made deriving 300 hosts take 16 s):
  #  - the first edge host by name: the proxy of a public route declared on a
  #    non-edge host (fleet/routes.py); every other route is served by its own host;
  #  - the listeners of every route (host-native and active services'), grouped by
  #    the host whose proxy serves them.
  context =
    fleet:
    let
      edges = builtins.filter (n: builtins.elem "edge" fleet.hosts.${n}.data.roles) (builtins.attrNames fleet.hosts);
      proxyOf =
        h: public: if public && edges != [ ] && !(builtins.elem "edge" h.data.roles) then builtins.head edges else h.name;
      routes = u.concatMap (
        h:
        map (r: {
          proxy = proxyOf h r.public;
          inherit (r) listener;
        }) (h.data.routes ++ u.concatMap (s: u.concatMap (c: c.routes) s.data.components) (builtins.filter (s: s.data.active) h.services))
      ) (builtins.attrValues fleet.hosts);
    in
    {
      inherit fleet;
      listenersByProxy = builtins.mapAttrs (_: rs: map (r: r.listener) rs) (builtins.groupBy (r: r.proxy) routes);
    };

  # Ports opened to the network: declared firewall_ports, fixed publishes not bound
  # to loopback, and the listeners of every route this host's proxy serves (its own
  # routes; on the edge, the fleet's public ones).  Route backends publish on
  # 127.0.0.1 by default and are reached through the proxy.  The agent has no
  # network port: mcfleet reaches its unix socket through SSH.
  firewallIn =
    ctx: entry:
    let
      publishes = u.concatMap (s: u.concatMap (c: c.publish) s.data.components) (
        builtins.filter (s: s.data.active) entry.services
      );
      open = builtins.filter (p: !(isLoopback p.host_ip)) publishes;
      listeners = ctx.listenersByProxy.${entry.name} or [ ];
      sortInts = xs: builtins.sort builtins.lessThan (u.unique xs);
    in
    {
      tcp = sortInts (
        entry.data.firewall_ports ++ map (p: p.host_port) (builtins.filter (p: p.protocol != "udp") open) ++ listeners
      );
      udp = sortInts (map (p: p.host_port) (builtins.filter (p: p.protocol == "udp") open));
    };
  firewall = fleet: firewallIn (context fleet);

  isEdge = entry: builtins.elem "edge" entry.data.roles;

  # host.json `nix`: what the NixOS module declares so the node accepts `nix copy`.
  nixTrust =
    entry:
    let
      n = entry.data.nix or { };
      trust = n.trust or null;
    in
    {
      trustedUsers = if trust == "trusted-user" then [ (entry.data.ssh.user or "root") ] else [ ];
      publicKeys = if trust == "signed" then n.public_keys or [ ] else [ ];
    };

  # Everything above for one host, as plain data (what `nix eval .#lib.hosts.<h>` shows).
  host = fleet: hostIn (context fleet);

  # Every host's values: hosts fleet == mapAttrs (_: host fleet) fleet.hosts, with the
  # fleet-wide part computed once.
  hosts =
    fleet:
    let
      ctx = context fleet;
    in
    builtins.mapAttrs (_: hostIn ctx) fleet.hosts;

  hostIn = ctx: entry: let fleet = ctx.fleet; in {
    inherit (entry.data) name os arch roles;
    system = if entry.data.arch == "arm64" then "aarch64-linux" else "x86_64-linux";
    users = users fleet entry;
    nameservers = nameservers entry;
    resolvers = resolvers.forHost fleet.fleet.zone entry;
    agentUnit = agentUnit entry;
    agentUnitText = agentUnitText entry;
    srvDirs = srvDirs entry;
    tmpfiles = tmpfiles entry;
    firewall = firewallIn ctx entry;
    edge = isEdge entry;
    nixTrust = nixTrust entry;
  };
}
