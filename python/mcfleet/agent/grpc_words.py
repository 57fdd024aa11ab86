"""What grpc says when a call reached no agent at all, in one place (the client, and the callers that
then ask the node what is at the agent's socket, read it).

grpc's UNAVAILABLE details for a channel that never connected read "failed to connect to all
addresses": the SSH forward or the relay to the agent's socket reached nothing and closed.  A
connection that closed during a call reads "Socket closed" or "Stream removed" instead.
"""

from __future__ import annotations

NOT_CONNECTED = "failed to connect"


def reached_no_agent(details: str) -> bool:
    """Whether grpc's text (an error's details or message) says the call reached no agent."""
    return NOT_CONNECTED in details
