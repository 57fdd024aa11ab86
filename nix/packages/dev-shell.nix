# `nix develop`: the mcfleet CLI, nix, and the tools the test suite and the linters
# run.  Run the tests from the checkout with the source on PYTHONPATH (set below),
# so an edit is tested without rebuilding the package:
#   nix develop -c pytest -x -q tests/unit
{ pkgs, mcfleet }:
let
  python = pkgs.python3.withPackages (
    ps:
    import ./python-deps.nix ps
    ++ (with ps; [
      pytest
      pytest-xdist
      hypothesis
      mypy
      grpcio-tools
      mypy-protobuf
      types-protobuf
      types-requests
    ])
  );
in
pkgs.mkShell {
  packages = [
    mcfleet
    pkgs.nix
    python
    pkgs.ruff
    pkgs.git
    # the real peers and tools the integration tests start (scripts/setup.sh installs
    # the same from Debian)
    pkgs.openssh
    pkgs.iproute2
    pkgs.socat
    pkgs.curl
    pkgs.zstd
    pkgs.debootstrap
    pkgs.podman
    pkgs.knot-dns
    pkgs.pebble
    pkgs.caddy
    pkgs.haproxy
  ];
  shellHook = ''
    export PYTHONPATH="$PWD/python''${PYTHONPATH:+:$PYTHONPATH}"
  '';
}
