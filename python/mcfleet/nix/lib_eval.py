"""Evaluate nix/lib (builtins only, no flake, no nixpkgs) on a fleet folder.

`mcfleet nix check` and the agreement tests use this: it needs only `nix-instantiate`,
works on untracked files (unlike a flake) and takes ~0.1 s.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mcfleet.errors import ToolMissing
from mcfleet.fleet.findings import Finding
from mcfleet.nix.runner import eval_expr

LIB_REL = Path("nix/lib/default.nix")


def find_lib(start: Path) -> Path:
    """nix/lib of the fleet checkout containing `start`, else of this source tree."""
    here = Path(__file__).resolve()
    for base in [start.resolve(), *start.resolve().parents, *here.parents]:
        if (base / LIB_REL).is_file():
            return base / LIB_REL.parent
    raise ToolMissing(
        "nix/lib was not found next to the fleet or in this mcfleet installation",
        hint="run from a checkout of the fleet repository (it holds nix/lib/)",
    )


def nix_path(path: Path) -> str:
    """A Nix path expression for an absolute path (any characters): /. + "<path>"."""
    text = json.dumps(str(path.resolve())).replace("${", "\\${")
    return f"(/. + {text})"


def lib_expr(lib: Path, root: Path, body: str) -> str:
    return f"let m = import {nix_path(lib)}; r = m.forRoot {nix_path(root)}; in {body}"


async def evaluate(root: Path, body: str = "{ inherit (r) findings hosts; codes = m.ruleCodes; }") -> Any:
    return await eval_expr(lib_expr(find_lib(root), root, body))


async def nix_findings(root: Path) -> tuple[list[Finding], list[str]]:
    """Findings from nix/lib for a fleet folder, and the rule codes nix implements."""
    data = await evaluate(root, "{ f = r.findings; codes = m.ruleCodes; }")
    found = [Finding(x["code"], x["file"], x["pointer"], x["message"], x["hint"], x.get("host")) for x in data["f"]]
    return found, list(data["codes"])
