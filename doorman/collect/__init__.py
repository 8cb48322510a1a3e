"""Stage 1: read the broker and the workers, write snapshots."""
