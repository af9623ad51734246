"""genwidgets: asynchronous media-generation APIs as first-class Jupyter citizens."""

from ._exceptions import *  # noqa: F403
from ._exceptions import __all__ as _exc_all
from ._models import Output, Status, Task

__version__ = "0.1.0"
__all__ = ["Output", "Status", "Task", "__version__", *_exc_all]
