"""mcfleet: a NixOS-integrated declarative fleet toolkit."""

__version__ = "0.1.0"
