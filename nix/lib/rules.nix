# The fleet rules that can be written in pure Nix, with the SAME codes, files,
# JSON pointers, messages and hints as the Python rules (python/mcfleet/fleet/
# rules_*.py; each module's docstring states the exact semantics).  A T1 test
# runs both on the real fleet and on every tests/data/bad-fleets/<code>/ case
# and compares them.  Load-level codes (json-syntax, schema, missing-file,
# name-mismatch) stay in Python: Nix cannot catch a JSON parse error, and the
# schema is pydantic's.
#
# check :: loaded fleet (load.nix) -> [ { code; file; pointer; message; hint; host; } ]
let
  u = import ./util.nix;
  dnsRules = import ./rules-dns.nix;
  inherit (u) concatMap finding optional;

  stageOrder = {
    foundation = 0;
    core = 1;
    management = 2;
    services = 3;
  };

  # Ranges the OS hands out by itself: system users (`useradd --system`, NixOS
  # auto-assigned) and normal users (Debian login.defs, NixOS isNormalUser).
  dynamicRanges = {
    nixos = [
      {
        kind = "system";
        lo = 400;
        hi = 999;
      }
      {
        kind = "user";
        lo = 1000;
        hi = 29999;
      }
    ];
    debian = [
      {
        kind = "system";
        lo = 100;
        hi = 999;
      }
      {
        kind = "user";
        lo = 1000;
        hi = 60000;
      }
    ];
  };
  # "system range 100-999" for an id the OS hands out by itself, else null.
  rangeOf =
    os: id:
    let
      hits = builtins.filter (r: id >= r.lo && id <= r.hi) dynamicRanges.${os};
      r = builtins.head hits;
    in
    if hits == [ ] then null else "${r.kind} range ${toString r.lo}-${toString r.hi}";
  inRange = os: id: rangeOf os id != null;

  kinds = [
    "uid"
    "gid"
  ];
  truthy = s: s != null && s != "";
  # attrNames is already sorted, by strcmp: the order `builtins.sort builtins.lessThan`
  # gives strings (sorting it again cost a comparator call per comparison).
  sortedNames = builtins.attrNames;
  # Hosts in name order, and every placed service (with its `host` and its indexed
  # `comps`): computed once by loadFleet, the only producer of the fleets rules read.
  hostList = fleet: fleet.hostList;
  indexed =
    xs:
    builtins.genList (i: {
      inherit i;
      v = builtins.elemAt xs i;
    }) (builtins.length xs);
  # Python's repr() of a plain string.
  repr = s: "'${s}'";

  # Every service, hosts in name order, services in file order (rules_base.placed_services).
  placed = fleet: fleet.placed;

  # What several rules read, computed once per fleet (`check` adds it; a rule called on a
  # bare loaded fleet computes it itself), in one pass over the placed services:
  # - unique: the first definition of each service name (`first`, name -> service), their
  #   names in placed order (`order`) and the later copies (`dups`);
  # - pinned: each host's pinned host ports;
  # - routes: every service route with its component, indices, JSON pointer and hostname
  #   (four rules read them; building them in each rule was a fifth of the check), the
  #   public ones, and those of first definitions (`firstRoutes`);
  # - ready-made `{ name; value; }` pairs for the name and listener rules, so that their
  #   common case (no clash) is a few listToAttrs/catAttrs over the whole fleet.
  contextOf =
    fleet:
    let
      zone = fleet.fleet.zone;
      all = placed fleet;
      # listToAttrs keeps the first of equal names: name -> its first definition
      first = builtins.listToAttrs (
        map (s: {
          name = s.data.name;
          value = s;
        }) all
      );
      per = map (
        s:
        let
          n = s.data.name;
          isFirst = first.${n}.file == s.file;
          # routeHostname, with the default computed once per service
          defaultName = "${n}.${zone}";
          routes = concatMap (
            c:
            map (
              r:
              let
                hostname = if r.v.hostname != null && r.v.hostname != "" then r.v.hostname else defaultName;
                x = {
                  inherit s hostname;
                  c = c.v;
                  ci = c.i;
                  r = r.v;
                  ri = r.i;
                  where = "/components/${toString c.i}/routes/${toString r.i}";
                  owner = {
                    name = hostname;
                    value = n;
                  };
                  listenerKey = {
                    name = "${toString r.v.listener}/${hostname}";
                    value = true;
                  };
                  # [ this route ] when it names a hostname other than its service's default
                  explicit = if hostname == defaultName then [ ] else [ x ];
                };
              in
              x
            ) c.routes
          ) s.comps;
        in
        if isFirst then
          {
            inherit routes;
            firstRoutes = routes;
            firstService = [ s ];
            dupService = [ ];
            ownName = [
              {
                name = defaultName;
                value = n;
              }
            ];
          }
        else
          {
            inherit routes;
            firstRoutes = [ ];
            firstService = [ ];
            dupService = [ s ];
            ownName = [ ];
          }
      ) all;
      gather = attr: builtins.concatLists (builtins.catAttrs attr per);
      routes = gather "routes";
    in
    {
      unique = {
        inherit first;
        order = builtins.catAttrs "name" (builtins.catAttrs "data" (gather "firstService"));
        dups = map (s: {
          dup = s;
          owner = first.${s.data.name};
        }) (gather "dupService");
      };
      pinned = builtins.mapAttrs (_: pinnedPorts) fleet.hosts;
      inherit routes;
      publicRoutes = builtins.filter (x: x.r.public) routes;
      firstRoutes = gather "firstRoutes";
      ownNames = gather "ownName";
    };
  ctx = fleet: fleet.ctx or (contextOf fleet);
  withContext = fleet: if fleet ? ctx then fleet else fleet // { ctx = contextOf fleet; };

  routeHostname = fleet: s: r: if r.hostname != null && r.hostname != "" then r.hostname else "${s.data.name}.${fleet.fleet.zone}";

  # -------------------------------------------------------------- rules_users.py

  pins =
    fleet:
    let
      pinned = sortedNames fleet.fleet.pins;
    in
    concatMap (
      h:
      concatMap (
        user:
        let
          pin = fleet.fleet.pins.${user};
          have = h.data.users.${user};
        in
        if !(h.data.users ? ${user}) then
          [
            (finding "pin-missing" h.file "/users"
              "host ${h.name} does not declare the pinned user ${repr user} (${toString pin.uid}/${toString pin.gid})"
              ''add "users": {"${user}": {"uid": ${toString pin.uid}, "gid": ${toString pin.gid}}}, or, if the node already has the account with other ids, declare those ids with a `pin_exception`''
              h.name
            )
          ]
        else if truthy have.pin_exception || (pin.uid == have.uid && pin.gid == have.gid) then
          [ ]
        else
          concatMap (
            kind:
            optional (pin.${kind} != have.${kind}) (
              finding "pin-mismatch" h.file "/users/${user}/${kind}"
                "${user} has ${kind} ${toString have.${kind}} on ${h.name} but the fleet pins ${toString pin.${kind}}"
                ''if the node really has ${kind} ${toString have.${kind}} (account older than the pin), keep it and add "pin_exception": "<why>"; never change a live rootless podman user's ids; otherwise set ${kind} to ${toString pin.${kind}}''
                h.name
            )
          ) kinds
      ) pinned
    ) (hostList fleet);

  # Attribute order is alphabetical in Nix but file order in Python, so with
  # two holders Nix reports the alphabetically later one (same code and file).
  idDuplicate =
    fleet:
    concatMap (
      h:
      # one user shares an id with nobody (most hosts have only mcp)
      optionals (builtins.length (builtins.attrNames h.data.users) > 1) (concatMap (
        kind:
        (builtins.foldl' (
          acc: user:
          let
            value = toString h.data.users.${user}.${kind};
          in
          if acc.seen ? ${value} then
            acc
            // {
              out = acc.out ++ [
                (finding "id-duplicate" h.file "/users/${user}/${kind}"
                  "${user} and ${acc.seen.${value}} share ${kind} ${value} on ${h.name}"
                  "give ${user} a ${kind} of its own (check `getent passwd` on the node first)"
                  h.name
                )
              ];
            }
          else
            acc // { seen = acc.seen // { ${value} = user; }; }
        ) { seen = { }; out = [ ]; } (sortedNames h.data.users)).out
      ) kinds)
    ) (hostList fleet);

  idDynamicRange =
    fleet:
    let
      # each OS once, sorted
      oses = builtins.attrNames (u.toSet (builtins.catAttrs "os" (builtins.catAttrs "data" (hostList fleet))));
      fromPins = concatMap (
        user:
        let
          pin = fleet.fleet.pins.${user};
        in
        if truthy pin.reason then
          [ ]
        else
          concatMap (
            kind:
            let
              value = pin.${kind};
              hit = builtins.filter (os: inRange os value) oses;
              os = builtins.head hit;
            in
            optional (hit != [ ]) (
              finding "id-dynamic-range" "fleet.json" "/pins/${user}/${kind}"
                "pinned ${kind} ${toString value} of ${user} lies in ${os}'s dynamic ${rangeOf os value}"
                ''state why it is safe with "reason": "…" (e.g. checked free on every node), or pick an id outside the range''
                null
            )
          ) kinds
      ) (sortedNames fleet.fleet.pins);
      fromHosts = concatMap (
        h:
        concatMap (
          user:
          let
            spec = h.data.users.${user};
            pin = fleet.fleet.pins.${user} or null;
          in
          # a pin with a reason covers both ids
          if truthy spec.pin_exception || (pin != null && truthy pin.reason) then
            [ ]
          else
            concatMap (
              kind:
              let
                value = spec.${kind};
                covered = pin != null && (truthy pin.reason || pin.${kind} == value);
              in
              optional (!covered && inRange h.data.os value) (
                finding "id-dynamic-range" h.file "/users/${user}/${kind}"
                  "${kind} ${toString value} of ${user} on ${h.name} lies in ${h.data.os}'s dynamic ${rangeOf h.data.os value}"
                  ''pin it fleet-wide in fleet.json with a reason, or document the node's existing account with "pin_exception": "…"''
                  h.name
              )
            ) kinds
        ) (sortedNames h.data.users)
      ) (hostList fleet);
    in
    fromPins ++ fromHosts;

  idSystemCollision =
    fleet:
    concatMap (
      h:
      let
        sys = h.data.system_accounts;
        holders = uid: builtins.filter (a: sys.${a}.uid == uid) (sortedNames sys);
      in
      optionals (sys != { }) (concatMap (
        user:
        let
          have = h.data.users.${user};
          other = holders have.uid;
        in
        optional (other != [ ] && builtins.head other != user) (
          finding "id-system-collision" h.file "/users/${user}/uid"
            "uid ${toString have.uid} of ${user} is already held by the system account ${repr (builtins.head other)} on ${h.name}"
            "resolve it on the node (${builtins.head other} keeps its uid); give ${user} a free pinned uid, before rootless podman ever runs as it"
            h.name
        )
      ) (sortedNames h.data.users))
    ) (hostList fleet);

  # NixOS autoSubUidGidRange gives the first normal user 100000:65536 (rules_users.py).
  subidOverlap =
    fleet:
    concatMap (
      h:
      let
        login = h.data.ssh.user or "root";
        auto =
          optional (h.data.os == "nixos" && login != "root" && !(h.data.users ? ${login}))
            {
              user = login;
              start = 100000;
              count = 65536;
              auto = true;
            };
        forKind =
          kind:
          let
            declared = concatMap (
              user:
              let
                r = h.data.users.${user}.${kind} or null;
              in
              optional (r != null) {
                inherit user;
                inherit (r) start count;
                auto = false;
              }
            ) (sortedNames h.data.users);
            ranges = auto ++ declared;
            n = builtins.length ranges;
            overlaps = a: b: a.start <= b.start + b.count - 1 && b.start <= a.start + a.count - 1;
            at = builtins.elemAt ranges;
          in
          if n < 2 then
            [ ]
          else
          concatMap (
            i:
            let
              r = at i;
              before = builtins.filter (o: overlaps r o) (builtins.genList at i);
              o = builtins.head before;
              endOf = x: toString (x.start + x.count - 1);
              how = if o.auto then ", which NixOS gives the first normal user automatically" else "";
            in
            optional (!r.auto && before != [ ]) (
              finding "subid-overlap" h.file "/users/${r.user}/${kind}"
                "${kind} range ${toString r.start}-${endOf r} of ${r.user} on ${h.name} overlaps ${o.user}'s ${toString o.start}-${endOf o}${how}"
                "give ${r.user} a ${kind} range no other account on ${h.name} uses, e.g. start 2000000000 count ${toString r.count}; never move a range rootless podman already uses without migrating its storage"
                h.name
            )
          ) (builtins.genList (i: i) n);
      in
      # a range overlaps only another one: one user and no automatic range is never a finding
      optionals (builtins.length auto + builtins.length (builtins.attrNames h.data.users) > 1) (
        forKind "subuid" ++ forKind "subgid"
      )
    ) (hostList fleet);

  # -------------------------------------------------------------- rules_hosts.py

  # Addresses grouped case-insensitively, in host-name order; in a group with more than
  # one entry, the first names the owner and each later one is a finding (findings are
  # sorted afterwards, so only which entry comes first matters).
  addressDuplicate =
    fleet:
    let
      groups = builtins.groupBy (x: x.key) (
        concatMap (
          h:
          map (a: {
            host = h;
            inherit (a) i;
            address = a.v;
            key = builtins.elemAt h.addressKeys a.i;
          }) (indexed h.data.addresses)
        ) (hostList fleet)
      );
      # the common case: every lowered address is there once
      keys = builtins.concatLists (builtins.catAttrs "addressKeys" (hostList fleet));
      clean = builtins.length (builtins.attrNames (u.toSet keys)) == builtins.length keys;
    in
    optionals (!clean) (concatMap (
      key:
      let
        group = groups.${key};
        first = (builtins.head group).host.name;
      in
      concatMap (
        j:
        let
          x = builtins.elemAt group j;
          again = builtins.any (p: p.host.name == x.host.name) (builtins.genList (builtins.elemAt group) j);
        in
        if again then
          [
            (finding "address-duplicate" x.host.file "/addresses/${toString x.i}"
              "address ${x.address} is listed twice by ${x.host.name}"
              "remove the copy: addresses are tried in order, a second copy only delays the next one"
              x.host.name
            )
          ]
        else
          optional (first != x.host.name) (
            finding "address-duplicate" x.host.file "/addresses/${toString x.i}"
              "address ${x.address} of ${x.host.name} is already an address of ${first}"
              "each address must reach exactly one host: fix the copy-pasted address"
              x.host.name
          )
      ) (builtins.genList (j: j + 1) (builtins.length group - 1))
    ) (builtins.filter (key: builtins.length groups.${key} > 1) (builtins.attrNames groups)));

  edgeContainers =
    fleet:
    concatMap (
      h:
      # its roles, each once, are exactly [ "edge" ]
      optionals (h.data.roles != [ ] && builtins.all (r: r == "edge") h.data.roles) (
        map (
          s:
          finding "edge-containers" s.file "/components"
            "service ${s.data.name} is placed on ${h.name}, an edge-only host (edge nodes run no containers)"
            "move services/${s.data.name}.json to a worker or master host; the edge only carries public routes"
            h.name
        ) h.services
      )
    ) (hostList fleet);
  inherit (u) optionals;

  # mcfleet opens firewall_ports only through NixOS's networking.firewall (none on Debian)
  firewallUnmanaged =
    fleet:
    concatMap (
      h:
      optional (h.data.os == "debian" && (h.data.firewall_ports or [ ]) != [ ]) (
        finding "firewall-unmanaged" h.file "/firewall_ports"
          "${h.name} is a Debian host, and mcfleet opens firewall_ports only in a NixOS host's firewall"
          "remove firewall_ports from this host.json; if the node runs a firewall (nftables), open the ports there"
          h.name
      )
    ) (hostList fleet);

  masterCount =
    fleet:
    let
      masters = builtins.filter (h: builtins.elem "master" h.data.roles) (hostList fleet);
      n = builtins.length masters;
      names = builtins.concatStringsSep ", " (map (h: h.name) masters);
    in
    if n == 0 then
      [
        (finding "master-count" "hosts" "" "no host has the master role"
          ''add "master" to the `roles` of exactly one host (the one running the core services)''
          null
        )
      ]
    else if n > 1 then
      map (
        h:
        finding "master-count" h.file "/roles"
          "${toString n} hosts have the master role (${names}); there must be exactly one"
          ''keep "master" on one host and remove it from the others''
          h.name
      ) masters
    else
      [ ];

  # ----------------------------------------------------------- rules_services.py

  # Why an image reference is not pinned, or null (fleet/derive.py image_problem).
  imageProblem =
    image:
    let
      # the text after the last ':' of the last path part (after the last '/'), if any
      colon = builtins.match ".*:([^:/]*)" image;
      tag = if colon == null then null else builtins.head colon;
    in
    if builtins.match ".*@sha256:.*" image != null then
      null
    else if tag == null then
      "has no tag (podman would pull :latest)"
    else if tag == "" then
      "has an empty tag"
    else if tag == "latest" then
      "uses :latest"
    else
      null;

  imageUnpinned =
    fleet:
    concatMap (
      s:
      concatMap (
        c:
        let
          problem = imageProblem c.v.image;
        in
        optional (problem != null) (
          finding "image-unpinned" s.file "/components/${toString c.i}/image"
            "image ${c.v.image} of ${s.data.name}/${c.v.name} ${problem}"
            "pin an explicit version tag, e.g. `…/name:v1.2.0` (or a @sha256: digest)"
            s.host.name
        )
      ) s.comps
    ) (placed fleet);

  # A component whose route names and ports are all distinct (the usual case) is
  # answered by two set sizes; the fold runs only where there is a duplicate.
  distinct = keys: builtins.length (builtins.attrNames (u.toSet keys)) == builtins.length keys;
  routeNameKey = r: if r.name == null then "\n" else r.name;
  routeDuplicate =
    fleet:
    concatMap (
      s:
      concatMap (
        c:
        let
          rs = c.v.routes;
          n = builtins.length rs;
          a = builtins.elemAt rs 0;
          b = builtins.elemAt rs 1;
        in
        if
          n < 2
          || (n == 2 && routeNameKey a != routeNameKey b && toString a.port != toString b.port)
          || (n > 2 && distinct (map routeNameKey rs) && distinct (map (r: toString r.port) rs))
        then
          [ ]
        else
        (builtins.foldl' (
          acc: r:
          let
            where = "/components/${toString c.i}/routes/${toString r.i}";
            # null is a name too: two unnamed routes would both be $PORT.
            nameKey = routeNameKey r.v;
            portKey = toString r.v.port;
          in
          {
            names = acc.names // { ${nameKey} = true; };
            ports = acc.ports // { ${portKey} = true; };
            out =
              acc.out
              ++ optional (acc.names ? ${nameKey}) (
                finding "route-duplicate" s.file "${where}/name"
                  "${s.data.name}/${c.v.name} has two routes named ${if r.v.name != null && r.v.name != "" then repr r.v.name else "unnamed (both would be $PORT)"}"
                  "give each route of a component its own `name` (it becomes $PORT_<NAME>)"
                  s.host.name
              )
              ++ optional (acc.ports ? ${portKey}) (
                finding "route-duplicate" s.file "${where}/port"
                  "${s.data.name}/${c.v.name} has two routes on container port ${portKey}"
                  "each route of a component needs its own port: remove the copy or fix the port"
                  s.host.name
              );
          }
        ) { names = { }; ports = { }; out = [ ]; } c.routes).out
      ) s.comps
    ) (placed fleet);

  # -------------------------------------------------------------- rules_ports.py

  # Every pinned host port of a host: services by file, components, publishes before routes.
  pinnedPorts =
    h:
    concatMap (
      s:
      concatMap (
        c:
        map (p: {
          port = p.v.host_port;
          protocol = if p.v.protocol == null then "tcp" else p.v.protocol;
          addresses = [ (if p.v.host_ip == null then "*" else p.v.host_ip) ];
          inherit (s) file;
          pointer = "/components/${toString c.i}/publish/${toString p.i}/host_port";
          label = "${s.data.name}/${c.v.name} publish ${toString p.i}";
        }) c.publish
        ++ map (r: {
          port = r.v.host_port;
          protocol = "tcp";
          addresses = r.v.bind;
          inherit (s) file;
          pointer = "/components/${toString c.i}/routes/${toString r.i}/host_port";
          label = "${s.data.name}/${c.v.name} route ${if truthy r.v.name then r.v.name else toString r.i}";
        }) (builtins.filter (r: r.v.host_port != null) c.routes)
      ) s.comps
    ) h.services;

  hostPortDuplicate =
    fleet:
    concatMap (
      h:
      (builtins.foldl' (
        acc: p:
        let
          key = "${p.protocol}/${toString p.port}";
          held = acc.held.${key} or [ ];
          hits = builtins.filter (
            x: x.addr == "*" || builtins.elem "*" p.addresses || builtins.elem x.addr p.addresses
          ) held;
        in
        if hits != [ ] then
          acc
          // {
            out = acc.out ++ [
              (finding "host-port-duplicate" p.file p.pointer
                "${p.protocol} host port ${toString p.port} on ${h.name} is pinned by ${p.label} and already by ${(builtins.head hits).label}"
                "give each pinned host port on a host (protocol and address) to one route or publish"
                h.name
              )
            ];
          }
        else
          acc
          // {
            held = acc.held // {
              ${key} =
                held
                ++ map (a: {
                  addr = a;
                  inherit (p) label;
                }) p.addresses;
            };
          }
      ) {
        held = { };
        out = [ ];
      } (ctx fleet).pinned.${h.name}).out
    ) (hostList fleet);

  portRangeExhausted =
    fleet:
    let
      low = fleet.fleet.ports.min;
      high = fleet.fleet.ports.max;
      c = ctx fleet;
      # A host wants at most all the fleet's routes and has taken at most all its pinned
      # ports: when the range holds both (the usual fleet), no host can run out.
      roomy = builtins.length c.routes + builtins.length (builtins.concatLists (builtins.attrValues c.pinned)) <= high - low + 1;
    in
    optionals (!roomy) (concatMap (
      h:
      let
        inside = builtins.filter (p: p.port >= low && p.port <= high) (ctx fleet).pinned.${h.name};
        taken = u.unique (map (p: p.port) inside);
        wanted = builtins.length (
          concatMap (s: concatMap (c: builtins.filter (r: r.host_port == null) c.routes) s.data.components) h.services
        );
        free = high - low + 1 - builtins.length taken;
      in
      # taken is at most `inside`: when the range has room for both, no need to count it
      optional (wanted + builtins.length inside > high - low + 1 && wanted > free) (
        finding "port-range-exhausted" "fleet.json" "/ports"
          "the port range ${toString low}-${toString high} has ${toString free} free port(s) on ${h.name} but ${toString wanted} route(s) need one"
          "widen `ports` in fleet.json or pin `host_port` on some routes"
          h.name
      )
    ) (hostList fleet));

  publicRoutes =
    fleet:
    let
      hasEdge = builtins.any (h: builtins.elem "edge" h.data.roles) (hostList fleet);
      domains = fleet.fleet.public_domains;
      underDomain = name: builtins.any (d: name == d || u.hasSuffix ".${d}" name) domains;
      allowed = if domains == [ ] then "none declared" else builtins.concatStringsSep ", " domains;
    in
    concatMap (
      x:
      let
        s = x.s;
        inherit (x) where;
        name = x.hostname;
      in
      optional (!hasEdge) (
        finding "public-no-edge" s.file "${where}/public" "${name} is public but no host has the edge role to carry it"
          ''add "edge" to the roles of the host that takes public traffic, or set "public": false''
          s.host.name
      )
      ++ optional (!(underDomain name)) (
        finding "public-domain" s.file "${where}/hostname"
          "public hostname ${name} is not under the fleet's public domains (${allowed})"
          "set `hostname` to a name under public_domains, or add its domain to fleet.json"
          s.host.name
      )
    ) (ctx fleet).publicRoutes;

  # routes.WILDCARDS: every address of the node
  wildcards = [
    "0.0.0.0"
    "::"
    "[::]"
  ];

  # "localhost", "::1" or 127.x, brackets stripped (routes.is_loopback).
  isLoopback =
    a:
    let
      m = builtins.match "\\[(.*)]" a;
      bare = if m == null then a else builtins.head m;
    in
    bare == "localhost" || bare == "::1" || u.hasPrefix "127." bare;

  # Every route in rule order: hosts by name, each host's host.json routes, then the
  # routes of its services (first definitions only: a second definition claims nothing).
  listenerClaims =
    fleet:
    let
      serviceClaims = builtins.groupBy (c: c.host) (
        map (x: {
          file = x.s.file;
          inherit (x) where hostname;
          host = x.s.host.name;
          inherit (x.r) listener public;
          what = "${x.s.data.name}/${x.c.name}";
          owner = x.s.data.name;
        }) (ctx fleet).firstRoutes
      );
    in
    concatMap (
      h:
      map (r: {
        file = h.file;
        where = "/routes/${toString r.i}";
        host = h.name;
        inherit (r.v) listener hostname public;
        what = "${h.name} host route";
        owner = "${h.name} host routes";
      }) (indexed h.data.routes)
      ++ serviceClaims.${h.name} or [ ]
    ) (hostList fleet);

  # Claims of one (listener, hostname) after the first are reported; findings are sorted
  # afterwards, so only which claim is first matters.
  routeListenerDuplicate =
    fleet:
    let
      groups = builtins.groupBy (x: "${toString x.listener}/${x.hostname}") (listenerClaims fleet);
      # the common case: as many distinct (listener, hostname) keys as claims
      hostRoutes = builtins.concatLists (builtins.catAttrs "routes" (builtins.catAttrs "data" (hostList fleet)));
      firstRoutes = (ctx fleet).firstRoutes;
      keys = builtins.listToAttrs (
        map (r: {
          name = "${toString r.listener}/${r.hostname}";
          value = true;
        }) hostRoutes
        ++ builtins.catAttrs "listenerKey" firstRoutes
      );
      clean = builtins.length (builtins.attrNames keys) == builtins.length hostRoutes + builtins.length firstRoutes;
    in
    optionals (!clean) (concatMap (
      key:
      let
        claims = groups.${key};
        owner = builtins.head claims;
      in
      map (
        x:
        finding "route-listener-duplicate" x.file "${x.where}/listener"
          "${x.hostname} on listener ${toString x.listener} is routed twice: by ${x.what} and by ${owner.what} (${owner.file})"
          "a listener carries a hostname once: give one route another `listener` (e.g. 443 web, 8443 API, 9443 gRPC) or another hostname"
          x.host
      ) (builtins.tail claims)
    ) (builtins.filter (key: builtins.length groups.${key} > 1) (builtins.attrNames groups)));

  # One owner (a service, or a host's host routes) on a host without the edge role that routes
  # a hostname inside the zone both as public (the edge's proxy) and not (its host's proxy):
  # every route of it whose `public` differs from the owner's first route of that hostname.
  routeNameSplit =
    fleet:
    let
      edges = map (h: h.name) (builtins.filter (h: builtins.elem "edge" h.data.roles) (hostList fleet));
      suffix = ".${fleet.fleet.zone}";
      claims = builtins.filter (x: !(builtins.elem x.host edges) && u.hasSuffix suffix x.hostname) (
        listenerClaims fleet
      );
      groups = builtins.groupBy (x: "${x.owner}/${x.hostname}") claims;
      # the common case, public names outside the zone (the seed's): no split possible, and the
      # claims of every route are never built (they were +17 % of a 3,000-host check's calls)
      outside = h: !(builtins.elem h edges);
      publicInZone =
        builtins.any (x: outside x.s.host.name && u.hasSuffix suffix x.hostname) (ctx fleet).publicRoutes
        || builtins.any (
          h: outside h.name && builtins.any (r: r.public && u.hasSuffix suffix r.hostname) h.data.routes
        ) (hostList fleet);
    in
    optionals (edges != [ ] && publicInZone) (concatMap (
      key:
      let
        first = builtins.head groups.${key};
      in
      map (
        x:
        let
          public = if x.public then x else first;
          internal = if x.public then first else x;
        in
        finding "route-name-split" x.file "${x.where}/public"
          "${x.hostname} is routed by ${builtins.head edges}'s proxy (public, listener ${toString public.listener}) and by ${x.host}'s (listener ${toString internal.listener}), but its A record can lead to one host only"
          ''give the public route a hostname of its own (e.g. under public_domains), or set the same "public" on every route of this hostname''
          x.host
      ) (builtins.filter (x: x.public != first.public) (builtins.tail groups.${key}))
    ) (builtins.attrNames groups));

  publicLoopback =
    fleet:
    let
      hasEdge = builtins.any (h: builtins.elem "edge" h.data.roles) (hostList fleet);
      backendAddress = b: builtins.head (builtins.match "(.*):[0-9]+" b);
    in
    optionals hasEdge (
      concatMap (
        h:
        optionals (h.data.routes != [ ] && !(builtins.elem "edge" h.data.roles)) (
          concatMap (
            r:
            optional (r.v.public && isLoopback (backendAddress r.v.backend)) (
              finding "public-loopback" h.file "/routes/${toString r.i}/backend"
                "public route ${r.v.hostname} points at ${r.v.backend} on ${h.name}: loopback, which the edge's proxy cannot reach"
                "make the program on ${h.name} listen on an address the edge reaches (e.g. its Tailnet address) and use it in `backend`, or set `public` to false"
                h.name
            )
          ) (indexed h.data.routes)
        )
      ) (hostList fleet)
      ++ concatMap (
        x:
        let
          s = x.s;
          h = s.host;
        in
        optional (!(builtins.elem "edge" h.data.roles) && builtins.all isLoopback x.r.bind) (
          finding "public-loopback" s.file "/components/${toString x.ci}/routes/${toString x.ri}/bind"
            "public route ${x.hostname} of ${s.data.name}/${x.c.name} is published only on loopback of ${h.name} (${builtins.concatStringsSep ", " x.r.bind}), which the edge's proxy cannot reach"
            ''add an address of ${h.name} that the edge reaches to "bind" (e.g. its Tailnet address), or set "public": false''
            h.name
        )
      ) (ctx fleet).publicRoutes
    );

  # Addresses lowered -> the first host by name that lists them (listToAttrs keeps the first),
  # loopback and wildcards left out (every node's).  A service is walked with its JSON pointers
  # only when one of its route binds or publish host_ips belongs to another host: in the common
  # case (none does) that is one lookup per address.
  bindOtherHost =
    fleet:
    let
      owner = builtins.listToAttrs (
        concatMap (
          h:
          map (key: {
            name = key;
            value = h.name;
          }) (builtins.filter (a: !(isLoopback a || builtins.elem a wildcards)) h.addressKeys)
        ) (hostList fleet)
      );
      # the other host `a` is an address of, or null (its own, loopback, a wildcard, unknown)
      otherOf =
        h: a:
        let
          key = u.toLower a;
          o = owner.${key} or null;
        in
        if o == null || o == h.name || builtins.elem key h.addressKeys then null else o;
      addressesOf =
        c:
        builtins.concatLists (builtins.catAttrs "bind" c.routes)
        ++ builtins.filter (x: x != null) (builtins.catAttrs "host_ip" c.publish);
      published =
        s:
        concatMap (
          c:
          concatMap (
            r:
            map (b: {
              ci = c.i;
              comp = c.v.name;
              where = "routes/${toString r.i}/bind/${toString b.i}";
              address = b.v;
            }) (indexed r.v.bind)
          ) c.routes
          ++ concatMap (
            p:
            optional (p.v.host_ip != null) {
              ci = c.i;
              comp = c.v.name;
              where = "publish/${toString p.i}/host_ip";
              address = p.v.host_ip;
            }
          ) c.publish
        ) s.comps;
    in
    concatMap (
      s:
      let
        h = s.host;
        suspect = builtins.any (c: builtins.any (a: otherOf h a != null) (addressesOf c.v)) s.comps;
      in
      optionals suspect (
        concatMap (
          x:
          let
            other = otherOf h x.address;
            roles = fleet.hosts.${other}.data.roles;
            edgeOnly = roles != [ ] && builtins.all (r: r == "edge") roles;
            elsewhere =
              if edgeOnly then
                "; ${other} is edge-only and runs no containers"
              else
                ", or move ${s.data.name}.json to hosts/${other}/services/";
          in
          optional (other != null) (
            finding "bind-other-host" s.file "/components/${toString x.ci}/${x.where}"
              "${s.data.name}/${x.comp} publishes on ${x.address}, an address of ${other}, not of ${h.name} (podman could not bind it there)"
              "use one of ${h.name}'s addresses (${builtins.concatStringsSep ", " h.data.addresses})${elsewhere}"
              h.name
          )
        ) (published s)
      )
    ) (placed fleet);

  coreOffMaster =
    fleet:
    concatMap (
      s:
      optional (s.data.stage == "core" && !(builtins.elem "master" s.host.data.roles)) (
        finding "core-off-master" s.file "/stage"
          "core-stage service ${s.data.name} is placed on ${s.host.name}, which is not the master"
          "move the service file under the master's hosts/<name>/services/, or give it a later stage"
          s.host.name
      )
    ) (placed fleet);

  # -------------------------------------------------------------- rules_names.py

  names =
    fleet:
    let
      us = (ctx fleet).unique;
      dupFindings = map (
        d:
        finding "name-claimed-twice" d.dup.file "/name"
          "service ${d.dup.data.name} is defined twice: here (on ${d.dup.host.name}) and in ${d.owner.file}"
          "a service is placed on exactly one host: delete one of the two files"
          d.dup.host.name
      ) us.dups;
      c = ctx fleet;
      # The routes of each name's first definition that name another hostname than their
      # service's default, in placed order: a route on its own default name is never
      # reported (that name is its service's), nor does it change who owns another name.
      claims = builtins.concatLists (builtins.catAttrs "explicit" c.firstRoutes);
      # A service's own default name is its own; otherwise the first claim owns a hostname.
      # listToAttrs keeps the first of equal names, so the default names (distinct: one per
      # service name) go first, then the claims in placed order.
      # Then each host's own routes, hosts in name order: a host's routes are one owner.
      hostClaims = concatMap (
        h:
        map (r: {
          inherit h;
          inherit (r.v) hostname;
          where = "/routes/${toString r.i}";
          mine = "${h.name}'s host routes";
        }) (indexed h.data.routes)
      ) (hostList fleet);
      owners = builtins.listToAttrs (
        c.ownNames
        ++ builtins.catAttrs "owner" claims
        ++ map (x: {
          name = x.hostname;
          value = x.mine;
        }) hostClaims
      );
      claimedBy = who: if u.hasSuffix " host routes" who then who else "service ${who}";
    in
    dupFindings
    ++ concatMap (
      x:
      let
        claimant = owners.${x.hostname};
        name = x.s.data.name;
      in
      optional (claimant != name) (
        finding "name-claimed-twice" x.s.file "${x.where}/hostname"
          "hostname ${x.hostname} of ${name} is already claimed by service ${claimant}"
          "every DNS name, route and certificate has one owner: pick another hostname"
          x.s.host.name
      )
    ) claims
    ++ concatMap (
      x:
      let
        claimant = owners.${x.hostname};
      in
      optional (claimant != x.mine) (
        finding "name-claimed-twice" x.h.file "${x.where}/hostname"
          "hostname ${x.hostname} of ${x.mine} is already claimed by ${claimedBy claimant}"
          "every DNS name, route and certificate has one owner: pick another hostname"
          x.h.name
      )
    ) hostClaims;

  dependencies =
    fleet:
    let
      us = (ctx fleet).unique;
      services = us.first;
      direct = concatMap (
        name:
        let
          s = services.${name};
        in
        concatMap (
          d:
          let
            dep = d.v;
            target = services.${dep} or null;
          in
          if target == null then
            [
              (finding "unknown-reference" s.file "/depends_on/${toString d.i}" "${name} depends on ${repr dep}, which no host defines"
                "fix the name, or add hosts/<host>/services/${dep}.json"
                s.host.name
              )
            ]
          else
            optional (stageOrder.${target.data.stage} > stageOrder.${s.data.stage}) (
              finding "stage-cycle" s.file "/depends_on/${toString d.i}"
                "${name} (${s.data.stage}) depends on ${dep} (${target.data.stage}), a later boot stage"
                "move ${dep} to stage ${s.data.stage} or earlier, or ${name} to a later stage"
                s.host.name
            )
        ) (indexed s.data.depends_on)
      ) us.order;

      # Depth-first search from each service in name order; 1 = on the stack,
      # 2 = done; one finding per back edge, at the edge that closes the cycle.
      #
      # The marks live in a three-level trie keyed by hex digits of the name's md5, so
      # marking a service copies three 16-slot sets and one tiny leaf instead of the
      # whole visited set (`state // { … }` on a flat set made the search quadratic:
      # 6,000 services took 1.5 s and 500 MB).  The stack is a linked list
      # ({ name; up; }), turned into a path only when a cycle is reported.
      slots = builtins.mapAttrs (
        n: _:
        let
          h = builtins.hashString "md5" n;
        in
        {
          a = builtins.substring 0 1 h;
          b = builtins.substring 1 1 h;
          c = builtins.substring 2 1 h;
        }
      ) services;
      mark = st: n: (let k = slots.${n}; in st.${k.a}.${k.b}.${k.c}.${n} or 0);
      # A service none of whose dependencies is defined can be on no cycle, and nor can one
      # whose defined dependencies are all such services (a cycle through it would go on
      # through one of them): the search neither marks nor enters either (visiting one
      # reports nothing, since each of its dependencies is skipped), which leaves it only
      # the services of longer chains.
      bare = builtins.mapAttrs (_: s: !(builtins.any (d: services ? ${d}) s.data.depends_on)) services;
      leaf = builtins.mapAttrs (_: s: builtins.all (d: !(services ? ${d}) || bare.${d}) s.data.depends_on) services;
      setMark =
        st: n: v:
        let
          k = slots.${n};
          l1 = st.${k.a} or { };
          l2 = l1.${k.b} or { };
          l3 = l2.${k.c} or { };
        in
        st // { ${k.a} = l1 // { ${k.b} = l2 // { ${k.c} = l3 // { ${n} = v; }; }; }; };
      # The stack from `dep` up to the top, as a list in push order.
      pathFrom =
        dep: node: acc:
        if node.name == dep then [ node.name ] ++ acc else pathFrom dep node.up ([ node.name ] ++ acc);
      visit =
        stack: st: name:
        let
          top = {
            inherit name;
            up = stack;
          };
          deps = indexed services.${name}.data.depends_on;
          step =
            acc: d:
            let
              dep = d.v;
              m = mark acc.state dep;
            in
            if !(services ? ${dep}) || leaf.${dep} then
              acc
            else if m == 1 then
              let
                from = pathFrom dep top [ ];
                p = services.${name};
              in
              acc
              // {
                out = acc.out ++ [
                  (finding "stage-cycle" p.file "/depends_on/${toString d.i}"
                    "dependency cycle: ${builtins.concatStringsSep " -> " (from ++ [ dep ])}"
                    "break the cycle: a service may only depend on services that start before it"
                    p.host.name
                  )
                ];
              }
            else if m == 2 then
              acc
            else
              let
                r = visit top (setMark acc.state dep 1) dep;
              in
              {
                state = r.state;
                out = acc.out ++ r.out;
              };
          res = builtins.foldl' step {
            state = st;
            out = [ ];
          } deps;
        in
        {
          state = setMark res.state name 2;
          inherit (res) out;
        };
      cycles =
        (builtins.foldl' (
          acc: root:
          if leaf.${root} || mark acc.state root != 0 then
            acc
          else
            let
              r = visit null (setMark acc.state root 1) root;
            in
            {
              state = r.state;
              out = acc.out ++ r.out;
            }
        ) {
          state = { };
          out = [ ];
        } (sortedNames services)).out;
    in
    direct ++ cycles;

  # Every rule once, with the codes it reports.  A rule reporting several codes is
  # evaluated once by `check` (Nix does not memoise a function call: filtering its
  # output per code re-ran the whole rule for every code).
  rules = [
    { rule = pins; codes = [ "pin-mismatch" "pin-missing" ]; }
    { rule = idDuplicate; codes = [ "id-duplicate" ]; }
    { rule = idDynamicRange; codes = [ "id-dynamic-range" ]; }
    { rule = idSystemCollision; codes = [ "id-system-collision" ]; }
    { rule = subidOverlap; codes = [ "subid-overlap" ]; }
    {
      rule = dnsRules.dns;
      codes = [ "dns-no-fallback" "dns-fallback-unused" "dns-fallback-internal" "dns-fallback-unreached" ];
    }
    { rule = dnsRules.reachable; codes = [ "dns-unreachable" ]; }
    { rule = addressDuplicate; codes = [ "address-duplicate" ]; }
    { rule = edgeContainers; codes = [ "edge-containers" ]; }
    { rule = masterCount; codes = [ "master-count" ]; }
    { rule = firewallUnmanaged; codes = [ "firewall-unmanaged" ]; }
    { rule = imageUnpinned; codes = [ "image-unpinned" ]; }
    { rule = routeDuplicate; codes = [ "route-duplicate" ]; }
    { rule = publicRoutes; codes = [ "public-no-edge" "public-domain" ]; }
    { rule = coreOffMaster; codes = [ "core-off-master" ]; }
    { rule = routeListenerDuplicate; codes = [ "route-listener-duplicate" ]; }
    { rule = routeNameSplit; codes = [ "route-name-split" ]; }
    { rule = publicLoopback; codes = [ "public-loopback" ]; }
    { rule = bindOtherHost; codes = [ "bind-other-host" ]; }
    { rule = hostPortDuplicate; codes = [ "host-port-duplicate" ]; }
    { rule = portRangeExhausted; codes = [ "port-range-exhausted" ]; }
    { rule = names; codes = [ "name-claimed-twice" ]; }
    { rule = dependencies; codes = [ "unknown-reference" "stage-cycle" ]; }
  ];
in
rec {
  # code -> rule: the codes nix implements (the agreement test compares these).
  byCode = builtins.listToAttrs (
    u.concatMap (
      r:
      map (code: {
        name = code;
        value = fleet: builtins.filter (x: x.code == code) (r.rule (withContext fleet));
      }) r.codes
    ) rules
  );
  codes = builtins.attrNames byCode;
  check =
    loaded:
    let
      fleet = withContext loaded;
    in
    u.sortFindings (
      u.concatMap (
        r:
        let
          declared = u.toSet r.codes;
        in
        builtins.filter (x: declared ? ${x.code}) (r.rule fleet)
      ) rules
    );
  inherit imageProblem rules;
}
