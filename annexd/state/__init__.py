"""The journal: durable request rows, their lifecycle table, and upgrades of earlier releases' journals."""
