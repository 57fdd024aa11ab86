# The `mcfleet` CLI (and the `mcfleet-agent` entry point; one Python package).
{
  lib,
  python3Packages,
  src,
}:
python3Packages.buildPythonApplication {
  pname = "mcfleet";
  version = "0.1.0";
  pyproject = true;
  # Only what the wheel needs: a change under tests/ or hosts/ does not rebuild it.
  src = lib.fileset.toSource {
    root = src;
    fileset = lib.fileset.unions [
      (src + "/pyproject.toml")
      (src + "/README.md")
      (src + "/python")
    ];
  };
  build-system = [ python3Packages.setuptools ];
  dependencies = import ./python-deps.nix python3Packages;
  # pyproject's lower bounds are for pip; nixpkgs' release carries its own versions.
  pythonRelaxDeps = true;
  # The test suite starts real sshd/podman/knot peers; it runs in CI, not in the build.
  doCheck = false;
  pythonImportsCheck = [ "mcfleet" ];
  meta = {
    description = "Declarative fleet toolkit: validate, plan and apply changes to NixOS and Debian nodes";
    license = lib.licenses.mit;
    mainProgram = "mcfleet";
    platforms = lib.platforms.linux;
  };
}
