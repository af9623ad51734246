"""A loopback server that speaks the providers' async protocols, with fault injection.

Tests and benchmarks drive the real client against it over real HTTP; users point a notebook at
it to try the UI offline::

    from genwidgets.sandbox import Sandbox, FaultConfig

    with Sandbox(task_seconds=0.5, faults=FaultConfig(error_rate=0.1, seed=1)) as sb:
        os.environ.update(sb.env)           # GENWIDGETS_<PROVIDER>_URL -> http://127.0.0.1:PORT
        ...
        sb.stats()["submit_fingerprints"]   # was anything submitted twice?

or from a shell: ``python -m genwidgets.sandbox`` (``genwidgets sandbox``), then drive it over
HTTP: ``GET/POST /_sandbox/faults``, ``GET /_sandbox/stats``, ``POST /_sandbox/reset``,
``GET/POST/DELETE /_sandbox/limits`` on any port.

Providers' published per-key limits can be enforced (``Sandbox(limits=DOCUMENTED_LIMITS)``,
``sb.set_limits("onerouter", 600, 30)``, ``--enforce-limits``): past them a request gets the
provider's own 429, counted in ``stats()["limited"]``, so a client's budget is tested for real.

Any non-empty API key is accepted except ``bad-key`` (401 everywhere) and ``no-quota-key`` (an
empty account where the provider documents one: RixAPI 403, OneRouter 402, Segmind 406). Prompt
markers: ``[fail]`` fails the task, ``[slow]`` runs it 10x longer, ``[expire]`` makes it 404 from
the moment it succeeds. Only loopback is ever bound; keys are never logged or stored (accounts
are told apart by a hash).
"""

from __future__ import annotations

from ._faults import FaultConfig
from ._limits import DOCUMENTED_LIMITS, ServerLimits
from ._result_files import MediaSizes
from ._server import Sandbox

__all__ = [
    "DEFAULT_PORTS",
    "DOCUMENTED_LIMITS",
    "PROVIDERS",
    "FaultConfig",
    "MediaSizes",
    "Sandbox",
    "ServerLimits",
]


def __getattr__(name: str) -> object:
    """`PROVIDERS` (the protocols served) and `DEFAULT_PORTS` (the CLI's ports), found when
    first asked for: plugins' protocols included (see `_protocols`)."""
    if name in ("PROVIDERS", "DEFAULT_PORTS"):
        from . import _server

        return getattr(_server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
