"""The instance side of an annex: ``condor_annex_ec2`` finds and installs the annex's
HTCondor configuration at boot, before HTCondor starts."""
