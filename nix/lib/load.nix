# Read a fleet folder into Nix values with builtins only:
#   <root>/fleet.json, <root>/hosts/<name>/host.json, <root>/hosts/<name>/services/<svc>.json
# Defaults are filled in exactly as the pydantic models in
# python/mcfleet/fleet/models.py fill them, so derived values and rules see the
# same data in both languages.  Schema checking is Python's job: a file that is
# not valid JSON stops Nix evaluation (builtins.fromJSON cannot be caught).
let
  u = import ./util.nix;

  readJSON = path: builtins.fromJSON (builtins.readFile path);

  withDefaults = defaults: value: defaults // value;

  normPin = p: withDefaults { reason = null; } p;

  normFleet =
    f:
    withDefaults {
      name = "fleet";
      public_domains = [ ];
      registry = null;
      pins = { };
      providers = { };
    } f
    // {
      ports = withDefaults {
        min = 10000;
        max = 60000;
      } (f.ports or { });
      pins = builtins.mapAttrs (_: normPin) (f.pins or { });
    };

  normUser =
    x:
    withDefaults {
      subuid = null;
      subgid = null;
      pin_exception = null;
    } x;

  normAgent =
    a:
    withDefaults {
      path = "/srv/mcp/mcp-agent";
      unit = "mcp-agent.service";
      socket = "/srv/mcp/mcp-agent.sock";
      user = "mcp";
      listen = null;
    } a;

  normHostRoute =
    r:
    withDefaults {
      listener = 443;
      public = false;
      description = null;
    } r;

  normHost =
    h:
    withDefaults {
      description = null;
      tags = [ ];
      users = { };
      system_accounts = { };
      firewall_ports = [ ];
    } h
    // {
      routes = map normHostRoute (h.routes or [ ]);
      users = builtins.mapAttrs (_: normUser) (h.users or { });
      agent = normAgent (h.agent or { });
      dns = withDefaults {
        resolver = "resolv.conf";
        fallback = [ ];
        fallback_dns = [ ];
      } h.dns;
    };

  normRoute =
    r:
    withDefaults {
      name = null;
      listener = 443;
      hostname = null;
      public = false;
      host_port = null;
      bind = [ "127.0.0.1" ];
    } r;

  normPublish =
    p:
    withDefaults {
      host_ip = null;
      protocol = null;
    } p;

  normComponent =
    c:
    withDefaults {
      volumes = [ ];
      cmd = [ ];
      env = [ ];
      network = null;
      user = null;
      restart = "unless-stopped";
      publish = [ ];
      health = null;
      routes = [ ];
    } c
    // {
      routes = map normRoute (c.routes or [ ]);
      publish = map normPublish (c.publish or [ ]);
    };

  normService =
    s:
    withDefaults {
      stage = "services";
      active = true;
      depends_on = [ ];
    } s
    // {
      components = map normComponent s.components;
    };

in
{
  # loadFleet :: path -> { fleet; hosts = { <name> = { name; dir; file; data; services = [ { file; stem; data } ]; }; }; hostList; placed; }
  loadFleet =
    root:
    let
      hostDirs = builtins.filter (d: builtins.pathExists (root + "/hosts/${d}/host.json")) (u.subdirs (root + "/hosts"));
      loadHost =
        d:
        let
          rel = "hosts/${d}";
          data = normHost (readJSON (root + "/${rel}/host.json"));
        in
        {
          name = data.name;
          dir = rel;
          file = "${rel}/host.json";
          inherit data;
          services = map (f: {
            file = "${rel}/services/${f}";
            stem = u.removeSuffix ".json" f;
            data = normService (readJSON (root + "/${rel}/services/${f}"));
          }) (u.jsonFiles (root + "/${rel}/services"));
        };
      entries = map loadHost hostDirs;
      hosts = builtins.listToAttrs (
        map (e: {
          name = e.name;
          value = e;
        }) entries
      );
      # Shared by every rule (computed once, lazily): hosts in name order (attrNames is
      # sorted), and every service in that order with its host (rules_base.placed_services).
      hostList = map (n: hosts.${n}) (builtins.attrNames hosts);
    in
    {
      fleet = normFleet (readJSON (root + "/fleet.json"));
      inherit hosts hostList;
      placed = u.concatMap (h: map (s: s // { host = h; }) h.services) hostList;
    };
}
