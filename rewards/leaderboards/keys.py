"""Every Redis key the leaderboards use, and how long each lives. Nothing else builds one.

All keys sit under ``{<prefix>:<program>}:lb``, so programs never share a key and
one Redis can host several installations (``REWARDS_REDIS_PREFIX``). The braces are a
Redis Cluster hash tag: only ``<prefix>:<program>`` picks the slot, so every key of a
program (its scripts touch several at once) lives in one slot, and programs spread
over the cluster. On one server the braces are just characters.

``…:b:<period>:<board>``  sorted set: the board. Member user id, score from
                           ``engine.boards.encode_score`` (lower ranks higher).
``…:h:<period>:<board>``  sorted set: the same board's opted-out people, kept aside
                           with their exact totals so ranks close up around them
                           and opting back in restores them at once.
``…:boards``               hash: every board key in use -> its opted-out twin.
``…:hidden``               set: users who opted out of leaderboards.
``…:names``                hash: user id -> display name, for the entries.
``…:applied``              sorted set: outbox batch ids applied to the boards
                           (score: when, ms). Makes re-applying a batch a no-op.
``…:rebuilding``           string: a rebuild's token; applies wait while it exists.
``…:generation``           string: the generation of these boards, set by the rebuild
                           that built them; the database holds it too, and when the
                           two differ (or it is gone) the worker rebuilds (``healing``).
``…:tmp:<token>:…``        a rebuild's scratch copies of all the above.

``<period>`` is ``all``, a week id (``2026-W12``) or a month id (``2026-03``);
``<board>`` is ``global`` or ``<cohort>:<value>``.

Keys from before the hash tag (``<prefix>:lb:<program>:…``) are no longer read: after
an upgrade the generation marker is missing under the new names, so the worker's
healing rebuilds every program's boards from the database (``healing``) within a
minute. The old keys are left as they were (delete ``<prefix>:lb:*`` when convenient).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from rewards.runtime import Runtime

# A closed week's or month's board stays in Redis this long after the period ends:
# long enough to read "last week" live and for the snapshot job (which works from
# the database, so it does not need the key) to have run many times over.
PERIOD_GRACE = timedelta(days=14)
# A rebuild holds its lock this long unless it renews it; a crashed rebuild frees
# the boards for applies again after this.
REBUILD_LOCK_TTL = timedelta(minutes=10)
# Scratch keys of a rebuild that died before swapping them in disappear after this.
SCRATCH_TTL = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class ProgramKeys:
    """The keys of one program's leaderboards (``scratch`` set: a rebuild's copies)."""

    base: str

    def board(self, period_id: str, board: str) -> str:
        return f"{self.base}:b:{period_id}:{board}"

    def hidden_board(self, period_id: str, board: str) -> str:
        return f"{self.base}:h:{period_id}:{board}"

    @property
    def registry(self) -> str:
        return f"{self.base}:boards"

    @property
    def hidden(self) -> str:
        return f"{self.base}:hidden"

    @property
    def names(self) -> str:
        return f"{self.base}:names"

    @property
    def applied(self) -> str:
        return f"{self.base}:applied"

    @property
    def rebuilding(self) -> str:
        return f"{self.base}:rebuilding"

    @property
    def generation(self) -> str:
        return f"{self.base}:generation"

    def scratch(self, token: str) -> ProgramKeys:
        return ProgramKeys(f"{self.base}:tmp:{token}")

    @property
    def pattern(self) -> str:
        """A SCAN pattern for every key of this program (tests, tooling)."""
        return f"{self.base}:*"


def program_keys(rt: Runtime, program_id: str) -> ProgramKeys:
    return program_keys_under(rt.settings.redis_prefix, program_id)


def program_keys_under(prefix: str, program_id: str) -> ProgramKeys:
    """The same keys for a process without a runtime (benchmarks, tooling): ``prefix`` is
    the installation's ``redis_prefix``."""
    return ProgramKeys(f"{{{prefix}:{program_id}}}:lb")
