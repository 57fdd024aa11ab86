"""The health check after a restart polls quickly at first, then settles at 0.5 s."""

from __future__ import annotations


def test_health_checks_back_off_from_a_tenth_of_a_second() -> None:
    from itertools import islice

    from mcfleet.apply.health import retry_delays

    assert list(islice(retry_delays(), 6)) == [0.1, 0.2, 0.4, 0.5, 0.5, 0.5]
