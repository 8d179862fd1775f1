"""Sessions: programs under a PTY, children of their project's supervisor, streamed to viewers."""
