"""The Nix side of mcfleet: the only package that spawns `nix` (argv builders, runner,
the registry of flake attributes Python relies on) and the host values nix/lib derives."""
