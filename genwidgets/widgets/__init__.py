"""Jupyter widgets over the task client: thin views, no HTTP.

- `show(model, **params)`: submit and display a live `StatusCard`, returned at once.
- `StatusCard`: one live task (status, progress, logs, the finished media, Cancel and Retry).
- `SubmitForm`: model picker, prompt and parameter fields; one card per submitted task.
- `Gallery` / `explore(...)`: a grid of live cards over models x prompts x seeds.

Each displays as the live widget plus a static HTML summary that is replaced when the work ends,
so a saved notebook shows the results where no widget JavaScript runs (GitHub, nbviewer).
"""

from __future__ import annotations

from ._card import StatusCard, resume, show
from ._form import SubmitForm
from ._gallery import Gallery, explore

__all__ = ["Gallery", "StatusCard", "SubmitForm", "explore", "resume", "show"]
