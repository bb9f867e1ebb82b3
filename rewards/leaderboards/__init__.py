"""Cohort leaderboards on Redis sorted sets (issue 3).

Data flow: the ledger's transaction writes ``postings`` (which boards and periods
each entry counts on) and an ``outbox`` row; after the commit the outbox batch is
applied to Redis (``outbox``), exactly once, by the writer or by the sweeper.
``boards`` reads, ``snapshots`` saves closed periods, ``rebuild`` recreates every
board from the postings, ``directory`` applies opt-outs and names. Every key is
built in ``keys``; the pure rules (membership, periods, tie-breaking scores) live in
``engine.boards``.
"""
