# The node agent alone: bin/mcfleet-agent from the mcfleet package.  On NixOS
# nodes `mcfleet` pushes this closure and links it to /srv/mcp/mcp-agent (seed
# item #10); the systemd unit from nix/modules/agent.nix never names a store path.
{ runCommand, mcfleet }:
runCommand "mcfleet-agent-${mcfleet.version}"
  {
    meta = mcfleet.meta // {
      mainProgram = "mcfleet-agent";
    };
  }
  ''
    mkdir -p $out/bin
    ln -s ${mcfleet}/bin/mcfleet-agent $out/bin/mcfleet-agent
    ln -s ${mcfleet}/bin/mcfleet-agent $out/bin/mcp-agent
  ''
