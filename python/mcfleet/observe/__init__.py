"""Observation: facts from the real nodes (one SSH round trip each) and from the providers.

from mcfleet.observe.collect import gather
facts = await gather(loaded, hosts, pool=None, progress=None)  # dict[host, Facts | Unreachable]
"""
