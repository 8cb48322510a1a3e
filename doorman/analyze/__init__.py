"""doorman-analyze: snapshots in, alerts and resolutions out.

engine (fingerprints, inhibition, cooldown, resolution), ruleset (the rules it runs), flaps,
state (the state file and its layout), check (Nagios mode), run (the streaming loop).
"""
