# The node agent alone: bin/mcfleet-agent (and bin/mcp-agent) from the mcfleet
# package.  On NixOS it is part of the system closure (nix/modules/agent.nix puts it
# in environment.systemPackages and links /srv/mcp/mcp-agent to it); the unit's
# ExecStart is /srv/mcp/mcp-agent, never a store path.
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
