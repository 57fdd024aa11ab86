# How a host's resolvers are written so that they fail over when the fleet's DNS
# dies (the Nix twin of python/mcfleet/fleet/resolvers.py).  glibc reads at most 3
# `nameserver` lines and waits `timeout` seconds per silent server, so it gets the
# fleet's servers, then a public fallback, 3 in all, with `timeout:1 attempts:2`;
# systemd-resolved moves to the next DNS= server when one fails (FallbackDNS= is
# asked only while no DNS= server is configured), so it gets every server in DNS=.
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

  # What the resolver is given: the first 3 for glibc (it ignores the rest), all for resolved.
  written = dns: if dns.resolver == "resolv.conf" then take glibcMaxNs (ordered dns) else ordered dns;

  # resolvers :: host entry -> { resolver; servers; options; fallbackDns; }  (nix eval .#lib.hosts.<h>)
  forHost =
    entry:
    let
      dns = entry.data.dns;
    in
    {
      inherit (dns) resolver;
      servers = written dns;
      options = if dns.resolver == "resolv.conf" then glibcOptions else [ ];
      fallbackDns = dns.fallback_dns;
    };
}
