"""Peer servers and the harness that runs them side by side with hyperserve."""
