# The agent bundle for Debian nodes: a tarball of the agent's whole closure,
# unpacked under /srv/mcp/bundle/ with a launcher at /srv/mcp/mcp-agent, so the
# node needs no Nix installation.
{
  runCommand,
  closureInfo,
  gnutar,
  gzip,
  mcfleet-agent,
}:
let
  closure = closureInfo { rootPaths = [ mcfleet-agent ]; };
in
runCommand "mcfleet-agent-bundle"
  {
    nativeBuildInputs = [
      gnutar
      gzip
    ];
  }
  ''
    mkdir -p $out
    tar --create --gzip --file $out/mcfleet-agent-bundle.tar.gz \
      --owner=0 --group=0 --numeric-owner --mtime=@1 --sort=name \
      $(cat ${closure}/store-paths)
    echo ${mcfleet-agent}/bin/mcp-agent > $out/entrypoint
    cp ${closure}/store-paths $out/store-paths
  ''
