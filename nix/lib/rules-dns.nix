# The resolver rules (python/mcfleet/fleet/rules_dns.py, whose docstring states the
# exact semantics): same codes, files, pointers, messages and hints.
let
  u = import ./util.nix;
  r = import ./resolvers.nix;
  inherit (u) concatMap finding optional optionals;

  # hosts in name order (computed once by loadFleet)
  hostList = fleet: fleet.hostList;
  indexed =
    xs:
    builtins.genList (i: {
      inherit i;
      v = builtins.elemAt xs i;
    }) (builtins.length xs);
  # Position of the first x in xs (it is there), without building an indexed copy.
  indexOf =
    x: xs:
    let
      go = i: if builtins.elemAt xs i == x then i else go (i + 1);
    in
    go 0;
  networkTags = [
    "tailnet"
    "lan"
    "public"
  ];
  # { tag; range; } for a Tailnet or private IPv4 address, else null.
  networkOf =
    address:
    let
      m = builtins.match "([0-9]+)[.]([0-9]+)[.]([0-9]+)[.]([0-9]+)" address;
      a = builtins.fromJSON (builtins.elemAt m 0);
      b = builtins.fromJSON (builtins.elemAt m 1);
    in
    if m == null then
      null
    else if a == 100 && b >= 64 && b <= 127 then
      {
        tag = "tailnet";
        range = "100.64.0.0/10";
      }
    else if a == 10 then
      {
        tag = "lan";
        range = "10.0.0.0/8";
      }
    else if a == 172 && b >= 16 && b <= 31 then
      {
        tag = "lan";
        range = "172.16.0.0/12";
      }
    else if a == 192 && b == 168 then
      {
        tag = "lan";
        range = "192.168.0.0/16";
      }
    else
      null;
in
{
  reachable =
    fleet:
    concatMap (
      h:
      if !(builtins.any (t: builtins.elem t networkTags) h.data.tags) then
        [ ]
      else
        concatMap (
          field:
          concatMap (
            x:
            let
              net = networkOf x.v;
            in
            optional (net != null && !(builtins.elem net.tag h.data.tags)) (
              finding "dns-unreachable" h.file "/dns/${field}/${toString x.i}"
                "resolver ${x.v} of ${h.name} is in ${net.range} (${net.tag}), but ${h.name} is not tagged ${net.tag}: it cannot reach it"
                ''remove it from ${field}, or add the tag "${net.tag}" if ${h.name} really is on that network''
                h.name
            )
          ) (indexed h.data.dns.${field})
        ) [
          "nameservers"
          "fallback"
        ]
    ) (hostList fleet);

  dns =
    fleet:
    let
      # a set, not a list: each host asks about its fallbacks, and elem over every
      # address of the fleet made the rule quadratic
      # (lowering costs a regex match: each nameserver and fallback text is lowered once
      # per fleet, though most hosts list the same few)
      hosts = hostList fleet;
      distinct = xs: builtins.attrNames (u.toSet xs);
      internal = u.toSet (
        builtins.concatLists (builtins.catAttrs "addressKeys" hosts)
        ++ map u.toLower (distinct (u.concatMap (h: h.data.dns.nameservers) hosts))
      );
      isInternal = a: internal ? ${u.toLower a};
      fallbackInternal = builtins.listToAttrs (
        map (a: {
          name = a;
          value = isInternal a;
        }) (distinct (u.concatMap (h: h.data.dns.fallback) hosts))
      );
    in
    concatMap (
      h:
      let
        dns = h.data.dns;
        name = h.name;
        public = builtins.filter (a: !fallbackInternal.${a}) dns.fallback;
        first = builtins.head public;
        servers = map u.toLower (r.ordered dns);
        position = indexOf (u.toLower first) servers;
      in
      if public == [ ] then
        (
          if builtins.any (a: !(isInternal a)) dns.fallback_dns then
            [
              (finding "dns-fallback-unused" h.file "/dns/fallback_dns"
                "host ${name} lists public resolvers only in fallback_dns (systemd-resolved FallbackDNS=), which is never asked while the fleet nameservers are configured"
                ''move them to "fallback": mcfleet writes those into DNS=, which resolved switches through when a server does not answer''
                name
              )
            ]
          else
            [
              (finding "dns-no-fallback" h.file "/dns/fallback" "host ${name} has no fallback resolver outside the fleet"
                ''add public resolvers, e.g. "fallback": ["1.1.1.1", "8.8.8.8"]''
                name
              )
            ]
        )
      else
        # every fallback is public on the usual host: nothing to point at
        optionals (builtins.length public != builtins.length dns.fallback) (concatMap (
          x:
          optional fallbackInternal.${x.v} (
            finding "dns-fallback-internal" h.file "/dns/fallback/${toString x.i}"
              "fallback ${x.v} of ${name} is a fleet-internal resolver: it fails together with the fleet's DNS"
              "list it under `nameservers` and keep only resolvers outside the fleet (e.g. 1.1.1.1) in `fallback`"
              name
          )
        ) (indexed dns.fallback))
        # `servers` holds at most as many entries as nameservers and fallbacks together, so
        # with no more than glibcMaxNs of them the position is below it (the usual host)
        ++ optional (
          dns.resolver == "resolv.conf"
          && builtins.length dns.nameservers + builtins.length dns.fallback > r.glibcMaxNs
          && position >= r.glibcMaxNs
        ) (
          finding "dns-fallback-unreached" h.file "/dns/fallback/${toString (indexOf first dns.fallback)}"
            "host ${name} resolves through /etc/resolv.conf, where glibc asks only the first ${toString r.glibcMaxNs} nameservers: its first public fallback ${first} would be number ${toString (position + 1)}, so it is never asked"
            ''keep at most ${toString (r.glibcMaxNs - 1)} fleet nameservers ahead of the fallback, or set "resolver": "systemd-resolved" if the node runs it''
            name
        )
    ) (hostList fleet);
}
