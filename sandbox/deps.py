"""FastAPI dependencies shared by the GIFQ API and the control API."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from sandbox.runtime import SandboxRuntime


async def get_runtime(request: Request) -> SandboxRuntime:
    """The app's runtime, ticked first so anything due by the sandbox clock has happened.

    Async on purpose: FastAPI runs sync dependencies in a thread pool, and the runtime
    must only ever be touched from the event loop."""
    runtime: SandboxRuntime = request.app.state.runtime
    runtime.tick()
    return runtime


RuntimeDep = Annotated[SandboxRuntime, Depends(get_runtime)]
