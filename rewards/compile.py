"""Compiling rule sets off the event loop, and the per-process cache of compiled ones.

Checking a file takes CPU time (about a second for a file near the 1 MB limit on a busy
machine), so it never runs on the event loop: a small file is checked in a thread, a
large one in a separate process (``off_loop``), where it cannot hold the interpreter's
lock while the server answers other requests.
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from rewards.errors import RewardsError, RulesRejected
from rewards.runtime import Runtime
from rules import RuleSet, RulesInvalid, load_rules
from rules.challenges import ChallengeSet, load_challenges
from rules.yamlsrc import MAX_CHARACTERS

T = TypeVar("T")

PROCESS_OVER = 64_000
"""Files longer than this (in characters) are checked in a separate process."""

_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()


def _process_pool() -> ProcessPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            # spawn: a fork of a process with threads and an event loop is not safe.
            context = multiprocessing.get_context("spawn")
            _pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=context,
                initializer=_exit_with_parent,
                initargs=(os.getpid(),),
            )
        return _pool


def _exit_with_parent(parent: int) -> None:
    """In the worker: end when the process that started it is gone (killed, or exited
    without shutting the pool down), instead of lingering as an orphan."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _run_checked(compile_fn: Callable[[str], Any], source: str) -> tuple[bool, Any]:
    # In the child: an error crosses back as plain values (an exception's own pickling
    # would drop its code and details).
    try:
        return True, compile_fn(source)
    except RewardsError as exc:
        return False, (type(exc), exc.message, exc.code, exc.details)


async def off_loop(compile_fn: Callable[[str], T], source: str) -> T:
    """``compile_fn(source)`` away from the event loop: in a thread for a small file, in
    a worker process for a large one. Errors are raised here as ``compile_fn`` raised them."""
    global _pool
    if len(source) <= PROCESS_OVER or len(source) > MAX_CHARACTERS:
        # Small, or over the limit (refused before parsing): not worth sending to a process.
        return await asyncio.to_thread(compile_fn, source)
    loop = asyncio.get_running_loop()
    try:
        ok, value = await loop.run_in_executor(_process_pool(), _run_checked, compile_fn, source)
    except BrokenProcessPool:  # the worker died (killed, out of memory): start afresh
        with _pool_lock:
            _pool = None
        return await asyncio.to_thread(compile_fn, source)
    if not ok:
        kind, message, code, details = value
        raise kind(message, code=code, details=details)
    result: T = value
    return result


def compile_rules(source: str, *, filename: str = "rules.yaml") -> RuleSet:
    try:
        return load_rules(source, source=filename)
    except RulesInvalid as exc:
        first = exc.errors[0] if exc.errors else None
        message = (
            f"{filename}:{first.line}:{first.column}: {first.message}"
            if first is not None and first.line is not None
            else "the rule set is not valid"
        )
        raise RulesRejected(message, details=[error.to_dict() for error in exc.errors]) from exc


def cache_ruleset(rt: Runtime, program_id: str, version: int, ruleset: RuleSet) -> None:
    """Keep ``ruleset`` as the program's compiled rules, dropping its other versions: a
    rule set can take megabytes, and uploads must not grow memory without bound."""
    for key in [key for key in rt.rule_sets if key[0] == program_id and key[1] != version]:
        rt.rule_sets.pop(key, None)
    rt.rule_sets[(program_id, version)] = ruleset


FILENAME = "challenges.yaml"  # the name errors give a challenges file


@functools.lru_cache(maxsize=256)
def _compiled(source: str, filename: str) -> ChallengeSet:
    # Keyed by the text: a set is immutable, so every program with the same file shares it.
    return load_challenges(source, source=filename)


def compile_challenges(source: str, *, filename: str = FILENAME) -> ChallengeSet:
    """Validate a challenges file; a bad one raises ``RulesRejected`` naming line and column."""
    try:
        return _compiled(source, filename)
    except RulesInvalid as exc:
        first = exc.errors[0]
        message = (
            f"{filename}:{first.line}:{first.column}: {first.message}"
            if first.line is not None
            else "the challenges file is not valid"
        )
        raise RulesRejected(
            message,
            code="invalid_challenges",
            details=[error.to_dict() for error in exc.errors],
        ) from exc
