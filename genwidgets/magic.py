"""`%gen` and `%%gen`: generate from a notebook line or cell (`%load_ext genwidgets`).

    %gen local:image a red rose on a table --seed 3 --aspect_ratio 1:1
    %%gen segmind:seedream-4.5 --seed 123
    a red rose on a wooden table, studio lighting

The magic submits at once (bad input is reported before anything is sent), shows a live status
card and returns the submitted `Task`; the card keeps updating while you work on. The prompt is
taken literally: no `$var` or `{var}` expansion, quotes work as in a shell.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from traitlets import Dict, Unicode

from ._exceptions import GenError
from ._models import Task
from .providers import provider_names

__all__ = ["GenMagics", "load_ipython_extension", "parse_gen_args"]

USAGE = """\
usage: %gen [PROVIDER:MODEL] PROMPT... [--seed N] [--count N] [--wait] [--fresh] [--PARAM VALUE]
       %%gen [PROVIDER:MODEL] [--seed N] [--PARAM VALUE ...]   (the cell body is the prompt)
       %gen --models                                            (list models you can use)
--fresh submits even when the journal holds a success for the same request (no replay).
Any other --name value (or --name=value) is passed to the model; JSON values are decoded
(--duration 5 is a number, --duration '"5"' a string)."""


def _decode(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def parse_gen_args(
    line: str, cell: str | None = None, default_model: str = "local:image"
) -> dict[str, Any]:
    """Split a `%gen` line into model, prompt, known options and free model parameters."""
    try:
        tokens = shlex.split(line, posix=True)
    except ValueError as exc:
        raise UsageError(f"{exc} (unbalanced quotes?)\n{USAGE}") from None
    options: dict[str, Any] = {
        "seed": None,
        "count": 1,
        "wait": False,
        "models": False,
        "fresh": False,
    }
    options["help"] = False
    params: dict[str, Any] = {}
    words: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token in ("-h", "--help"):
            options["help"] = True
        elif token in ("--wait", "--models", "--fresh"):
            options[token[2:]] = True
        elif token.startswith("--") and len(token) > 2:
            name, eq, value = token[2:].partition("=")
            if not eq:
                if i + 1 >= len(tokens) or tokens[i + 1].startswith("--"):
                    raise UsageError(f"--{name} needs a value\n{USAGE}")
                value = tokens[i + 1]
                i += 1
            key = name.replace("-", "_")
            if key in ("seed", "count"):
                try:
                    options[key] = int(value)
                except ValueError:
                    raise UsageError(
                        f"--{name} must be an integer, got {value!r}\n{USAGE}"
                    ) from None
            else:
                params[key] = _decode(value)
        else:
            words.append(token)
        i += 1
    model = default_model
    if words and words[0].partition(":")[0].lower() in provider_names() and ":" in words[0]:
        model = words.pop(0)
    prompt = cell.strip() if cell is not None and cell.strip() else " ".join(words).strip()
    if cell is not None and cell.strip() and words:
        raise UsageError(
            f"%%gen takes the prompt from the cell body only; got also {words!r}\n{USAGE}"
        )
    if options["count"] < 1:
        raise UsageError(f"--count must be at least 1\n{USAGE}")
    return {
        "model": model,
        "prompt": prompt,
        **options,
        "params": params,
    }


@magics_class
class GenMagics(Magics):
    """The `%gen` magics. Defaults are configurable, e.g. in ipython_config.py:
    `c.GenMagics.default_model = "segmind:seedream-4.5"`."""

    default_model = Unicode("local:image", help="model used when a line names none").tag(
        config=True
    )
    default_params = Dict(help="parameters added to every request unless given").tag(config=True)

    @no_var_expand
    @line_cell_magic
    def gen(self, line: str, cell: str | None = None) -> Task | list[Task] | None:
        """Generate an image, video or audio and show a live card (see `genwidgets.magic`).

        %gen local:image a red rose on a table --seed 3 --aspect_ratio 1:1
        %%gen segmind:seedream-4.5 --seed 123   (cell body = prompt)
        %gen --models
        """
        from ._client import get_client
        from ._runner import LoopRunner
        from .widgets import StatusCard

        args = parse_gen_args(line, cell, self.default_model)
        client = get_client()
        if args["help"]:
            print(USAGE)
            return None
        if args["models"]:
            for provider, infos in client.available_models().items():
                names = ", ".join(f"{provider}:{info.name} ({info.kind})" for info in infos)
                print(f"{provider}: {names or '(any model name is passed through)'}")
            return None
        if not args["prompt"]:
            raise UsageError(f"a prompt is required\n{USAGE}")
        params = {**self.default_params, **args["params"], "prompt": args["prompt"]}
        runner = LoopRunner.shared()
        tasks: list[Task] = []
        for index in range(args["count"]):
            if args["seed"] is not None:
                params["seed"] = args["seed"] + index
            try:
                task = runner.run(client.submit(args["model"], fresh=args["fresh"], **params))
            except GenError as exc:
                raise UsageError(str(exc)) from None
            card = StatusCard(task)
            card.track(client, task)
            card.display()
            tasks.append(task)
        if args["wait"]:
            tasks = [runner.run(client.wait(task)) for task in tasks]
        return tasks[0] if len(tasks) == 1 else tasks


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext genwidgets`."""
    ipython.register_magics(GenMagics)
