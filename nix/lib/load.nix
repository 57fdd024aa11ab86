# Read a fleet folder into Nix values with builtins only:
#   <root>/fleet.json, <root>/hosts/<name>/host.json, <root>/hosts/<name>/services/<svc>.json
# Defaults are filled in exactly as the pydantic models in
# python/mcfleet/fleet/models.py fill them, so derived values and rules see the
# same data in both languages.  Schema checking is Python's job: a file that is
# not valid JSON stops Nix evaluation (builtins.fromJSON cannot be caught).
let
  u = import ./util.nix;

  readJSON = path: builtins.fromJSON (builtins.readFile path);

  # Each normaliser is ONE `//`: `defaults // x` where no field is rewritten (constant
  # defaults need no thunk), else `x // { f = x.f or default; …; g = rewritten; }`
  # (`defaults // x // { … }` copied every parsed set twice).

  normPin = p: { reason = null; } // p;

  normFleet =
    f:
    f
    // {
      name = f.name or "fleet";
      public_domains = f.public_domains or [ ];
      registry = f.registry or null;
      providers = f.providers or { };
      ports =
        let
          p = f.ports or { };
        in
        p
        // {
          min = p.min or 10000;
          max = p.max or 60000;
        };
      pins = builtins.mapAttrs (_: normPin) (f.pins or { });
    };

  normUser =
    x:
    {
      subuid = null;
      subgid = null;
      pin_exception = null;
    }
    // x;

  normAgent =
    a:
    {
      path = "/srv/mcp/mcp-agent";
      unit = "mcp-agent.service";
      socket = "/srv/mcp/mcp-agent.sock";
      user = "mcp";
      listen = null;
    }
    // a;

  normHostRoute =
    r:
    {
      listener = 443;
      public = false;
      description = null;
    }
    // r;

  normHost =
    h:
    h
    // {
      description = h.description or null;
      tags = h.tags or [ ];
      system_accounts = h.system_accounts or { };
      firewall_ports = h.firewall_ports or [ ];
      routes = map normHostRoute (h.routes or [ ]);
      users = builtins.mapAttrs (_: normUser) (h.users or { });
      agent = normAgent (h.agent or { });
      dns = h.dns // {
        resolver = h.dns.resolver or "resolv.conf";
        fallback = h.dns.fallback or [ ];
        fallback_dns = h.dns.fallback_dns or [ ];
      };
    };

  normRoute =
    r:
    {
      name = null;
      listener = 443;
      hostname = null;
      public = false;
      host_port = null;
      bind = [ "127.0.0.1" ];
    }
    // r;

  normPublish =
    p:
    {
      host_ip = null;
      protocol = null;
    }
    // p;

  normComponent =
    c:
    c
    // {
      volumes = c.volumes or [ ];
      cmd = c.cmd or [ ];
      env = c.env or [ ];
      network = c.network or null;
      user = c.user or null;
      restart = c.restart or "unless-stopped";
      health = c.health or null;
      routes = map normRoute (c.routes or [ ]);
      publish = map normPublish (c.publish or [ ]);
    };

  normService =
    s:
    s
    // {
      stage = s.stage or "services";
      active = s.active or true;
      depends_on = s.depends_on or [ ];
      components = map normComponent s.components;
    };

  # A service's components with their positions, each with its routes and publishes
  # with theirs ({ i; v; }): several rules walk them with their JSON pointers.
  indexedComponents =
    components:
    builtins.genList (
      i:
      let
        c = builtins.elemAt components i;
      in
      {
        inherit i;
        v = c;
        routes = u.indexed c.routes;
        publish = u.indexed c.publish;
      }
    ) (builtins.length components);

in
{
  # loadFleet :: path -> { fleet; hosts = { <name> = host; }; hostList; placed; } where
  #   host = { name; dir; file; data; addressKeys; services = [ service ]; }
  #   service = { file; stem; data; host; comps = [ { i; v; routes = [ { i; v; } ]; publish = [ { i; v; } ]; } ]; }
  # (a service's `host` is its host's entry; `comps` are data.components with positions).
  loadFleet =
    root:
    let
      # pathExists is one lstat, a readDir five system calls (open, fstat, two getdents,
      # close): the host folders are not listed, only asked for host.json and services/.
      hostDirs = builtins.filter (d: builtins.pathExists (root + "/hosts/${d}/host.json")) (u.subdirs (root + "/hosts"));
      loadHost =
        d:
        let
          rel = "hosts/${d}";
          data = normHost (readJSON (root + "/${rel}/host.json"));
          entry = {
            name = data.name;
            dir = rel;
            file = "${rel}/host.json";
            inherit data;
            # the addresses lowered (both the address and the DNS rules compare them so)
            addressKeys = map u.toLower data.addresses;
            services = map (
              f:
              let
                sdata = normService (readJSON (root + "/${rel}/services/${f}"));
              in
              {
                file = "${rel}/services/${f}";
                stem = u.removeSuffix ".json" f;
                data = sdata;
                host = entry;
                comps = indexedComponents sdata.components;
              }
            ) (u.jsonFiles (root + "/${rel}/services"));
          };
        in
        entry;
      entries = map loadHost hostDirs;
      hosts = builtins.listToAttrs (
        map (e: {
          name = e.name;
          value = e;
        }) entries
      );
      # Shared by every rule (computed once, lazily): hosts in name order (attrNames is
      # sorted), and every service in that order (rules_base.placed_services).
      hostList = map (n: hosts.${n}) (builtins.attrNames hosts);
    in
    {
      fleet = normFleet (readJSON (root + "/fleet.json"));
      inherit hosts hostList;
      placed = u.concatMap (h: h.services) hostList;
    };
}
