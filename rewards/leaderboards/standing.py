"""Where someone who opted out of the boards would stand, for their own eyes only.

An opted-out person's totals live on each board's hidden twin (``keys.hidden_board``),
so nobody sees them and the ranks close up around them. Their own standing is the
rank they would have among the visible people: one more than the number of visible
members who rank above their score. Nothing is written; the boards stay as they are.
"""

from __future__ import annotations

from typing import Any

from engine.boards import decode_score
from rewards.leaderboards.keys import ProgramKeys
from rewards.leaderboards.scripts import Script
from rewards.runtime import Runtime

# KEYS: pairs of (board, hidden twin). ARGV: user.
# Returns {rank among the visible or -1, score or '', visible size} per pair.
STANDING = Script(
    """
local out = {}
for i = 1, #KEYS, 2 do
  local score = redis.call('ZSCORE', KEYS[i + 1], ARGV[1])
  if score then
    out[#out + 1] = redis.call('ZCOUNT', KEYS[i], '-inf', '(' .. score)
    out[#out + 1] = score
  else
    out[#out + 1] = -1
    out[#out + 1] = ''
  end
  out[#out + 1] = redis.call('ZCARD', KEYS[i])
end
return out
"""
)


async def standings(
    rt: Runtime, keys: ProgramKeys, user_id: str, boards: list[tuple[str, str]]
) -> list[dict[str, Any]]:
    """Per (period id, board): the would-be ``rank`` (or None), ``points`` and the
    visible ``size``."""
    if not boards:
        return []
    names: list[str] = []
    for period_id, board in boards:
        names += [keys.board(period_id, board), keys.hidden_board(period_id, board)]
    found = await STANDING(rt.redis, names, [user_id])
    out = []
    for index in range(len(boards)):
        above, score, size = found[3 * index : 3 * index + 3]
        out.append(
            {
                "rank": above + 1 if above >= 0 else None,
                "points": decode_score(float(score))[0] if score else 0,
                "size": size,
            }
        )
    return out
