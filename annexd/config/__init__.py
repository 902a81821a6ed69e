"""What the daemon is told: HTCondor knobs (through htcondor2), their reference table, the fixes errors name, and AWS key files."""
