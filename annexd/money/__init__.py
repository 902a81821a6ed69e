"""What an annex may cost, the admin's caps, and what an annex paid by the daemon may choose."""
