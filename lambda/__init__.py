"""The lease function (``lease.py``), deployed to AWS Lambda by ``condor_annex -setup``.

A package of its own because Lambda runs ``lease.py`` alone: it imports boto3 and the
standard library only, never ``annexd``.
"""
