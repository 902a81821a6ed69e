"""The daemon's and the client's retry schedule: :mod:`annex_ec2.backoff`, re-exported.

The one definition lives in the instance-side package because ``condor_annex_ec2`` runs on an
annex image's own Python (3.9 or newer, standard library and boto3 only) from a single-file
bundle that holds ``annex_ec2`` alone: it may import nothing from ``annexd``, while
``annexd`` may import from it.  Import ``Backoff`` and ``Deadline`` from here as before.
"""
from annex_ec2.backoff import Backoff, Deadline

__all__ = ["Backoff", "Deadline"]
