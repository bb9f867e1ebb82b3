"""A local, fault-injecting emulator of GIFQ's payout API. See ``sandbox/README.md``."""

from sandbox.app import create_app
from sandbox.client import SandboxControl
from sandbox.config import ConfigError, SandboxConfig, default_config, load_config
from sandbox.server import SandboxHandle, run, running_sandbox

__all__ = [
    "ConfigError",
    "SandboxConfig",
    "SandboxControl",
    "SandboxHandle",
    "create_app",
    "default_config",
    "load_config",
    "run",
    "running_sandbox",
]
