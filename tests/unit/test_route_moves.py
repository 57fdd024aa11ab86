"""A plan of some hosts only holds back a route's move to a proxy it leaves out (plan/route_moves.py)."""

from __future__ import annotations

from mcfleet.fleet.desired import DesiredAgent, DesiredHost, DesiredRoute
from mcfleet.observe.manifest import NO_ANSWER, Manifest, ManifestRoute
from mcfleet.phase import Phase
from mcfleet.plan.model import Action
from mcfleet.plan.route_moves import hold_moves, moving_to_left_out

NAME = "api.svc.example.test"
AGENT = DesiredAgent(path="/srv/mcp/mcp-agent", unit="mcp-agent.service", user="mcp", socket="/srv/mcp/s",
                     unit_sha256="", sha256=None)  # fmt: skip


def _desired() -> dict[str, DesiredHost]:
    """api made public: its route is now the edge's (full2); full1 runs the service."""
    route = DesiredRoute(hostname=NAME, mode="l7", service="api", service_host="full1", backend="10.0.0.1:20001")
    return {
        "full1": DesiredHost(name="full1", os="debian", arch="amd64", agent=AGENT),
        "full2": DesiredHost(name="full2", os="debian", arch="amd64", agent=AGENT, routes={route.key: route}),
    }


# what a plan of full1 alone lists for the move, besides a record of a name that stays put
ACTIONS = [
    Action(host="full1", phase=Phase.route, kind="delete", subject=f"route 443/{NAME}", reason="no longer declared"),
    Action(host="full1", phase=Phase.dns, kind="update", subject=f"dns {NAME}", reason="the address changed"),
    Action(
        host="full1",
        phase=Phase.cert,
        kind="delete",
        subject="cert api",
        before={"path": "/x", "sans": [NAME]},
        reason="no longer declared",
    ),
    Action(
        host="full1", phase=Phase.dns, kind="create", subject="dns db.svc.example.test", reason="not in the manifest"
    ),
]


def test_a_move_to_a_proxy_the_plan_leaves_out_is_refused_with_the_selection_that_makes_it_whole() -> None:
    moving = moving_to_left_out(ACTIONS, _desired(), planned={"full1"})
    assert moving == {ACTIONS[0].id: ("full2", NAME), ACTIONS[1].id: ("full2", NAME)}
    held = hold_moves(ACTIONS, moving, {"full2": Manifest()})
    assert [(a.subject, a.kind) for a in held] == [
        (f"route 443/{NAME}", "refuse"), (f"dns {NAME}", "refuse"), ("cert api", "refuse"),
        ("dns db.svc.example.test", "create"),
    ]  # fmt: skip
    assert held[0].reason == (
        f"{NAME}'s route moves to full2's proxy, which this plan leaves out and which has not taken it yet: "
        f"removed here, {NAME} would be served by no proxy"
    )
    assert held[2].reason.endswith(f"full1's proxy keeps routing {NAME} and needs this certificate")
    assert {a.hint for a in held[:3]} == {"plan both hosts so that the move is whole: --on full1 --on full2"}
    # an unreachable proxy host (no manifest), or one whose proxy never confirmed the route: held too
    assert hold_moves(ACTIONS, moving, {"full2": None}) == held
    unsure = Manifest(routes=[ManifestRoute(hostname=NAME, mode="l7", backend=NO_ANSWER)])
    assert hold_moves(ACTIONS, moving, {"full2": unsure}) == held


def test_a_move_the_left_out_proxy_already_made_or_a_plan_with_both_hosts_goes_ahead() -> None:
    moving = moving_to_left_out(ACTIONS, _desired(), planned={"full1"})
    taken = Manifest(routes=[ManifestRoute(hostname=NAME, mode="l7", backend="10.0.0.1:20001")])
    assert hold_moves(ACTIONS, moving, {"full2": taken}) == ACTIONS  # an earlier `apply --on full2` added it
    assert moving_to_left_out(ACTIONS, _desired(), planned={"full1", "full2"}) == {}


def test_a_move_that_also_changes_the_listener_is_held_and_a_name_the_old_proxy_keeps_is_not() -> None:
    """Made public on another listener at once: full1 removes 9443/api while full2 adds 443/api.  Matched
    by name, the removal is a move; when full1 keeps a route of the name (another listener), it is not."""
    removal = Action(host="full1", phase=Phase.route, kind="delete", subject=f"route 9443/{NAME}", reason="r")
    assert moving_to_left_out([removal], _desired(), planned={"full1"}) == {removal.id: ("full2", NAME)}
    keeps = _desired()
    own = DesiredRoute(
        hostname=NAME, mode="l4", service="api", service_host="full1", backend="127.0.0.1:1", listener=8443
    )
    keeps["full1"] = DesiredHost(name="full1", os="debian", arch="amd64", agent=AGENT, routes={own.key: own})
    assert moving_to_left_out([removal], keeps, planned={"full1"}) == {}


def test_a_move_to_a_proxy_host_that_did_not_answer_says_so() -> None:
    moving = moving_to_left_out(ACTIONS, _desired(), planned={"full1"})
    [route, *_rest] = hold_moves(ACTIONS, moving, {}, unreachable={"full2"})
    assert (route.kind, route.hint) == (
        "refuse",
        "plan again once full2 answers; its route phase takes the route first",
    )
    assert "moves to full2's proxy, which did not answer this plan and which has not taken it yet" in route.reason


def test_a_new_public_name_is_not_called_a_move() -> None:
    """A new public service on full1: its first A record points at full2's proxy, which has no route for it
    yet.  Held like a move, but said as what it is (seen: "greet's route moves to full2's proxy")."""
    first = Action(host="full1", phase=Phase.dns, kind="create", subject=f"dns {NAME}", reason="not in the manifest")
    moving = moving_to_left_out([first], _desired(), planned={"full1"})
    [held] = hold_moves([first], moving, {"full2": Manifest()})
    assert held.kind == "refuse"
    assert held.reason == (
        f"{NAME}'s route is new on full2's proxy, which this plan leaves out and which has not taken it yet: "
        f"{NAME} would lead to a proxy that does not route it"
    )
    assert held.hint == "plan both hosts so that the new route and its name come together: --on full1 --on full2"
