"""Living as a daemon: the entry point, condor_master's protocol, standalone start, reconfiguration, memory, and what condor_annexd says about itself."""
