# How a host's resolvers are written so that they fail over when the fleet's DNS
# dies (the Nix twin of python/mcfleet/fleet/resolvers.py).  glibc reads at most 3
# `nameserver` lines and waits `timeout` seconds per silent server, so it gets the
# fleet's servers, then a public fallback, 3 in all, with `timeout:1 attempts:2`;
# systemd-resolved (252) waits ~5 s on each silent DNS= server before the next, so
# its global DNS= gets the public fallbacks and the fleet's zone goes to the fleet's
# nameservers per link (a oneshot unit running resolvectl on the link that routes to
# each; FallbackDNS= is asked only while no DNS= server is configured).
let
  u = import ./util.nix;
  glibcMaxNs = 3;

  # Each server once, compared case-insensitively, first spelling kept.
  uniqueCi =
    xs:
    (builtins.foldl' (
      acc: x:
      if builtins.elem (u.toLower x) acc.keys then
        acc
      else
        {
          keys = acc.keys ++ [ (u.toLower x) ];
          out = acc.out ++ [ x ];
        }
    ) { keys = [ ]; out = [ ]; } xs).out;

  take = n: xs: builtins.genList (i: builtins.elemAt xs i) (if builtins.length xs < n then builtins.length xs else n);
in
rec {
  inherit glibcMaxNs uniqueCi;
  glibcOptions = [
    "timeout:1"
    "attempts:2"
  ];

  ordered = dns: uniqueCi (dns.nameservers ++ dns.fallback);

  # The fallbacks that are not also nameservers, each once.
  public =
    dns:
    let
      own = map u.toLower dns.nameservers;
    in
    builtins.filter (a: !(builtins.elem (u.toLower a) own)) (uniqueCi dns.fallback);

  # systemd-resolved with a public fallback: the zone per link, the rest to the fallbacks.
  zoneRouted = dns: dns.resolver == "systemd-resolved" && public dns != [ ];

  # The resolver's global list: the first 3 for glibc (it ignores the rest); resolved's
  # global DNS= gets the public fallbacks (or every server when there is none).
  written =
    dns:
    if dns.resolver == "resolv.conf" then
      take glibcMaxNs (ordered dns)
    else if zoneRouted dns then
      public dns
    else
      ordered dns;

  zoneServers = dns: if zoneRouted dns then uniqueCi dns.nameservers else [ ];

  # PATH of the zone unit's script on Debian and NixOS alike (ip, resolvectl).
  zonePath = "/run/current-system/sw/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  # One line for ExecStart (same text as python/mcfleet/fleet/resolvers.py ZONE_SCRIPT).
  zoneScript = ''PATH=@PATH@; zone=@ZONE@; servers="@SERVERS@"; dev_of() { set -- $(ip -o route get "$1" 2>/dev/null); if [ "$1" = local ]; then set -- $(ip -o addr show to "$2/32" 2>/dev/null); [ -n "$2" ] || return 1; echo "$2"; return 0; fi; while [ $# -gt 1 ]; do if [ "$1" = dev ]; then echo "$2"; return 0; fi; shift; done; return 1; }; links=; for a in $servers; do d=$(dev_of $a) || { echo "no route to $a" >&2; continue; }; case " $links " in *" $d "*) ;; *) links="$links $d" ;; esac; done; [ -n "$links" ] || { echo "no route to any of $servers" >&2; exit 1; }; for d in $links; do set --; for a in $servers; do [ "$(dev_of $a)" = "$d" ] && set -- "$@" $a; done; resolvectl dns $d "$@" && resolvectl domain $d "~$zone" && resolvectl default-route $d no || exit 1; echo "$zone -> $* on $d"; done'';
  # systemd expands `$` in ExecStart, so the script's are doubled.
  zoneExec =
    zone: servers:
    "/bin/sh -c '"
    + builtins.replaceStrings [ "$" ] [ "$$" ] (
      builtins.replaceStrings [ "@PATH@" "@ZONE@" "@SERVERS@" ] [ zonePath zone (builtins.concatStringsSep " " servers) ] zoneScript
    )
    + "'";

  # resolvers :: zone -> host entry -> { resolver; servers; options; fallbackDns; zone; }
  # (nix eval .#lib.hosts.<h>); zone: null, or the fleet's zone with its servers and the unit's ExecStart
  forHost =
    zone: entry:
    let
      dns = entry.data.dns;
    in
    {
      inherit (dns) resolver;
      servers = written dns;
      options = if dns.resolver == "resolv.conf" then glibcOptions else [ ];
      fallbackDns = dns.fallback_dns;
      zone =
        if zoneRouted dns then
          {
            name = zone;
            servers = zoneServers dns;
            exec = zoneExec zone (zoneServers dns);
          }
        else
          null;
    };
}
