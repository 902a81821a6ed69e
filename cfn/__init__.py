"""CloudFormation templates for ``condor_annex -setup``, installed as the package ``annexd_cfn``."""
