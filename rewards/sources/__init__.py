"""Event sources: Slack, xAPI statements from an LMS, CRM webhooks and the HRIS directory.

Each source turns its vendor's payload into ``EventIn``s and sends them down the one
ingestion path (``rt.group_commit`` → ``events.ingest``), so idempotency, rules,
streaks, challenges and thresholds are exactly those of ``POST /v1/events``.
Retractions go through ``ledger.retract``, the function behind
``POST /v1/events/{id}/retract``.
"""
