# A tiny NixOS "system" for the NixOS-mechanics tier, built with builtins.derivation only
# (no nixpkgs): what mcfleet's deploy path relies on in a real toplevel, nothing more.
#   $out/bin/switch-to-configuration   goal switch|boot|test|dry-activate (see switch.sh)
#   $out/sw/bin/mcp-agent              the agent, a store path of the system's closure
#   $out/etc/mcp-agent.service         the agent's unit, as nix/modules/agent.nix declares it
#   $out/nixos-version
{ busybox, system }:
{
  hostName,
  variant,
  agentFile,
  unitFile,
  switchScript,
}:
let
  sh = script: {
    inherit system;
    builder = busybox;
    args = [
      "sh"
      "-c"
      script
    ];
  };
  # "broken": an agent that dies at start, as a bad release would.
  agent =
    if variant == "broken" then
      derivation (
        sh ''
          B=${busybox}
          printf '#!/bin/sh\necho "this agent is broken on purpose" >&2\nexit 1\n' > $out
          $B chmod 0555 $out
        ''
        // {
          name = "mcp-agent-broken";
        }
      )
    else
      agentFile;
in
derivation (
  sh ''
    set -e
    B=${busybox}
    $B mkdir -p $out/bin $out/sw/bin $out/etc
    $B ln -s ${agent} $out/sw/bin/mcp-agent
    $B cp ${unitFile} $out/etc/mcp-agent.service
    $B sed "s|@out@|$out|g" ${switchScript} > $out/bin/switch-to-configuration
    $B chmod 0555 $out/bin/switch-to-configuration
    echo "${variant}" > $out/nixos-version
  ''
  // {
    name = "nixos-system-${hostName}-${variant}";
  }
)
