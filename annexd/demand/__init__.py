"""Demand-driven annexes: what the queue asks for, what the annex already has, and what to order.

One idea per module:

- :mod:`.ads` reads ClassAds, from a file (``file:PATH``: ``condor_q -long`` /
  ``condor_status -long`` output) or, through :mod:`.condor`, from the local schedd and the
  pool's collector (``ANNEX_DEMAND_JOBS``, ``ANNEX_DEMAND_SLOTS``);
- :mod:`.instance_types` knows each EC2 instance type's CPUs, memory and GPUs;
- :mod:`.jobs` picks the idle jobs meant for an annex and groups them by what they request;
- :mod:`.slots` makes the slot ad an instance of a type would advertise, with the annex's real
  START expression, and matches jobs against slots with ``classad2``;
- :mod:`.supply` is what the annex already has for them (booting instances, idle slots);
- :mod:`.budget` is the money rule every order is held to;
- :mod:`.planner` decides what to order.

Everything here is pure except :mod:`.condor` (the HTCondor daemons) and reading files.
"""
