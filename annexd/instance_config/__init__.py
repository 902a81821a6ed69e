"""What an annex's instances are handed: their HTCondor configuration, packed, with an IDTOKEN of the annex's own."""
