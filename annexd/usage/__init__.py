"""Command lines and manual pages from one table: shared by condor_annex and condor_annexd (standard library only, so -help starts fast)."""
