"""doorman-run: the supervised form of `doorman-collect | doorman-analyze | doorman-notify`.

`chain` joins processes by OS pipes (with optional tees), `streams` keeps the DOORMAN_STREAMS_DIR
copies, `supervise` runs the daemon: settings, signals, exit codes, reload (docs/run.md).
"""
