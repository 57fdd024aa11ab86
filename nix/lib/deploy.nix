# The text of the `apps.<system>.deploy` program: `nix run .#deploy -- rift`
# runs `mcfleet deploy rift` (validate, build, push, activate, post-activation
# steps for that host).  Kept as a plain string so a T1 test can run it with
# any `mcfleet` executable, without nixpkgs.
{
  scriptText = mcfleet: ''
    # nix run .#deploy -- <host> [options]  ==  mcfleet deploy <host> [options]
    if [ "$#" -eq 0 ]; then
      echo "usage: nix run .#deploy -- <host> [mcfleet deploy options]   (e.g. nix run .#deploy -- rift)" >&2
      exit 2
    fi
    exec "${mcfleet}" deploy "$@"
  '';
}
