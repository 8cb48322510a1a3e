"""Stage 1: read the broker and the workers, write snapshots.

Broker-independent: the snapshot (`snapshot`), when to take one (`schedule`), heartbeat liveness
(`heartbeats`), the terminal view (`human`) and the one library call behind `doorman-collect`
(`main.collect`). What is read comes from a `doorman.brokers.base.Broker`.
"""
