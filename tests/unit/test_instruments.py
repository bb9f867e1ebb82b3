"""Jobs are counted by how they end (``rewards.instruments.counted``)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from arq.cron import cron
from arq.worker import Retry, func
from prometheus_client import REGISTRY

from rewards.instruments import counted


def ran(name: str, outcome: str) -> float:
    labels = {"function": name, "outcome": outcome}
    return REGISTRY.get_sample_value("rewards_jobs_total", labels) or 0.0


async def job(ctx: dict[str, Any], how: str) -> str:
    if how == "retry":
        raise Retry(defer=1)
    if how == "fail":
        raise ValueError("boom")
    if how == "cancel":
        raise asyncio.CancelledError
    return "done"


@pytest.mark.parametrize(
    ("how", "raised", "outcome"),
    [
        ("ok", None, "complete"),
        ("retry", Retry, "retry"),
        ("fail", ValueError, "failed"),
        ("cancel", asyncio.CancelledError, "cancelled"),
    ],
)
async def test_a_job_is_counted_by_how_it_ended(
    how: str, raised: type[BaseException] | None, outcome: str
) -> None:
    function = counted(func(job, name=f"job-{how}"))
    assert function.name == f"job-{how}"
    before = ran(f"job-{how}", outcome)
    if raised is None:
        assert await function.coroutine({}, how) == "done"
    else:
        with pytest.raises(raised):
            await function.coroutine({}, how)
    assert ran(f"job-{how}", outcome) == before + 1


async def test_a_cron_job_keeps_its_name_and_schedule() -> None:
    job_cron = cron(job, name="rw:cron:job", minute={5}, unique=True)
    wrapped = counted(job_cron)
    assert (wrapped.name, wrapped.minute, wrapped.unique) == ("rw:cron:job", {5}, True)
    before = ran("rw:cron:job", "complete")
    await wrapped.coroutine({}, "ok")
    assert ran("rw:cron:job", "complete") == before + 1
