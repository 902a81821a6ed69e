"""CloudFormation templates for ``condor_annex -setup`` (package data, read with importlib.resources)."""
