"""doorman-scale: how many workers each pool of queues needs, from the snapshots' own figures.

`settings` declares the `scale:` keys and turns them into `Pool`s; `policy` is the decision as
pure functions of snapshots (time comes from their `ts`, so a replay decides what the live run
decided); `actuate` runs the user's `--exec` command without a shell; `stage` is the streaming
loop that ties them together for the CLI.
"""
