"""`%gen` and `%%gen`: generate from a notebook line or cell (`%load_ext genwidgets`).

    %gen local:image a red rose on a table --seed 3 --aspect_ratio 1:1
    %%gen segmind:seedream-4.5 --seed 123
    a red rose on a wooden table, studio lighting

The magic submits at once (bad input is reported before anything is sent), shows a live status
card and returns it: `card.status`, `card.outputs` and `card.task` stay current while you work
on, and `await card` gives the final `Task`. The prompt is taken literally: no `$var` or `{var}`
expansion, quotes work as in a shell.
"""

from __future__ import annotations

import difflib
import inspect
import json
import re
import shlex
import textwrap
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from traitlets import Dict, Unicode

from ._exceptions import GenError
from .providers import provider_names

if TYPE_CHECKING:
    from .widgets import StatusCard

__all__ = ["GenMagics", "load_ipython_extension", "parse_gen_args"]

USAGE = """\
usage: %gen [PROVIDER:MODEL] PROMPT... [--seed N] [--count N] [--wait] [--fresh] [--PARAM VALUE]
       %%gen [PROVIDER:MODEL] [--seed N] [--PARAM VALUE ...]   (the cell body is the prompt)
       %gen --models                                            (list models you can use)
--fresh submits even when the journal holds a success for the same request (no replay).
Any other --name value (or --name=value) is passed to the model; JSON values are decoded
(--duration 5 is a number, --duration '"5"' a string). Every option, with examples: %gen?"""

#: A first word shaped like `provider:model` (a letter first, no spaces, a word character after
#: the colon): "16:9", "note:" and "https://..." are not.
_MODEL_SHAPE = re.compile(r"[A-Za-z][\w.-]*:\w\S*")
#: Usage errors are printed as stderr text, which front ends may not wrap: wrap them here, the
#: first line after IPython's "UsageError: " prefix.
_WRAP = 80
_PREFIX = len("UsageError: ")


def wrap(text: str, width: int = _WRAP, first_indent: int = 0) -> str:
    """Wrap each line of `text` at `width` columns, never breaking a word or a model name; the
    first line leaves `first_indent` columns for a prefix printed before it."""
    lines = []
    for number, line in enumerate(text.splitlines() or [""]):
        lead = first_indent if number == 0 else 0
        if len(line) + lead <= width:
            lines.append(line)
            continue
        indent = line[: len(line) - len(line.lstrip())]
        filled = textwrap.fill(
            line,
            width,
            initial_indent=" " * lead,
            subsequent_indent=indent,
            break_long_words=False,
            break_on_hyphens=False,
        )
        lines.append(filled[lead:])
    return "\n".join(lines)


def _usage_error(message: str, usage: bool = True) -> UsageError:
    return UsageError(wrap(f"{message}\n{USAGE}" if usage else message, first_indent=_PREFIX))


def _unknown_provider(word: str) -> UsageError:
    provider, _, model = word.partition(":")
    close = difflib.get_close_matches(provider.lower(), provider_names(), n=1)
    hint = f" Did you mean {close[0]}:{model}?" if close else ""
    return _usage_error(
        f"{word!r} names no provider.{hint} Providers: {', '.join(provider_names())}. "
        f"Nothing was sent. (To start a prompt with {word!r}, name the model first: "
        f"%gen local:image {word} ...)",
        usage=False,
    )


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
        raise _usage_error(f"{exc} (unbalanced quotes?)") from None
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
                    raise _usage_error(f"--{name} needs a value")
                value = tokens[i + 1]
                i += 1
            key = name.replace("-", "_")
            if key in ("seed", "count"):
                try:
                    options[key] = int(value)
                except ValueError:
                    raise _usage_error(f"--{name} must be an integer, got {value!r}") from None
            else:
                params[key] = _decode(value)
        else:
            words.append(token)
        i += 1
    model = default_model
    if words and _MODEL_SHAPE.fullmatch(words[0]):
        if words[0].partition(":")[0].lower() not in provider_names():
            raise _unknown_provider(words[0])  # a typo must not run the default model
        model = words.pop(0)
    prompt = cell.strip() if cell is not None and cell.strip() else " ".join(words).strip()
    if cell is not None and cell.strip() and words:
        raise _usage_error(f"%%gen takes the prompt from the cell body only; got also {words!r}")
    if options["count"] < 1:
        raise _usage_error("--count must be at least 1")
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
    def gen(self, line: str, cell: str | None = None) -> StatusCard | CardList | None:
        """Generate an image, video or audio and show a live status card.

        Usage:
          %gen [PROVIDER:MODEL] PROMPT... [OPTIONS] [--PARAM VALUE ...]
          %%gen [PROVIDER:MODEL] [OPTIONS] [--PARAM VALUE ...]
          PROMPT (the whole cell body; several lines are fine)
          %gen --models
          %gen?  (this text)

        PROVIDER:MODEL
          The model, e.g. local:image, local:audio, local:video, segmind:seedream-4.5,
          netmind:Qwen/Qwen-Image, oxen:kling-video-v2-6-pro-text-to-video. Default:
          local:image (set c.GenMagics.default_model). A first word shaped like
          provider:model that names no provider is an error with "did you mean", and
          nothing is sent; to start a prompt with such a word, name the model first.

        PROMPT
          Taken literally: quotes work as in a shell, $var and {var} are not expanded.

        Options:
          --seed N     seed of the first task; with --count, tasks get N, N+1, ...
                       Without it the request carries no seed (the model's default):
                       the same line sends the same request, so re-running the
                       notebook replays it from the journal.
          --count N    submit N tasks (default 1): one card each.
          --wait       block until every task has ended (the cards keep updating).
          --fresh      submit even when the journal holds a success for the same
                       request (no replay).
          --models     list the models you can use (local, and every provider with a
                       key) and their kinds.
          -h, --help   print this text.

        Model parameters:
          Any other --NAME VALUE (or --NAME=VALUE) is passed to the model. Values are
          JSON when they parse: --duration 5 is a number, --duration '"5"' the string
          "5", --audio true a boolean, --size '[512, 512]' a list. Dashes become
          underscores (--aspect-ratio is aspect_ratio). Parameters are checked before
          anything is sent: an unknown one gets "did you mean".

        Returns:
          The live card (a list of cards with --count > 1), shown once: card.status,
          card.outputs (with .path once downloaded) and card.task stay current, and
          `task = await card` waits for the final Task. With --wait the cards have
          finished when the cell returns.

        Examples:
          %gen local:image a red rose on a table --seed 3 --aspect_ratio 1:1
          %gen local:video waves at dusk --seconds 2 --fps 12
          %gen local:audio "Hello there" --speech false --seconds 3
          %gen segmind:seedream-4.5 'a lighthouse, 35mm photo' --count 4 --seed 10
          tulip = %gen local:image a blue tulip --wait
          tulip.status, tulip.outputs[0].path

          %%gen local:image --seed 8
          a quiet harbour at night,
          lanterns reflected in the water

        Configuration (ipython_config.py, or %config in a notebook):
          c.GenMagics.default_model = "segmind:seedream-4.5"
          c.GenMagics.default_params = {"aspect_ratio": "16:9"}
        """
        from ._client import get_client
        from ._runner import LoopRunner
        from .widgets import StatusCard

        args = parse_gen_args(line, cell, self.default_model)
        client = get_client()
        if args["help"]:
            print(inspect.getdoc(GenMagics.gen))
            return None
        if args["models"]:
            for provider, infos in client.available_models().items():
                names = ", ".join(f"{provider}:{info.name} ({info.kind})" for info in infos)
                print(f"{provider}: {names or '(any model name is passed through)'}")
            return None
        if not args["prompt"]:
            raise _usage_error("a prompt is required")
        params = {**self.default_params, **args["params"], "prompt": args["prompt"]}
        runner = LoopRunner.shared()
        cards = CardList()
        for index in range(args["count"]):
            if args["seed"] is not None:
                params["seed"] = args["seed"] + index
            try:
                task = runner.run(client.submit(args["model"], fresh=args["fresh"], **params))
            except GenError as exc:
                raise _usage_error(str(exc), usage=False) from None
            card = StatusCard(task, client=client)
            card.track(client, task)
            card.display()
            cards.append(card)
        if args["wait"]:
            for card in cards:
                runner.run(card.wait())
        return cards[0] if len(cards) == 1 else cards


class CardList(list):  # type: ignore[type-arg]
    """The cards of one `%gen --count N` line: a list whose display is its cards, each shown
    once (the magic displayed them already, so `Out[n]` adds nothing in that cell)."""

    def _ipython_display_(self) -> None:
        for card in self:
            card._ipython_display_()


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext genwidgets`."""
    ipython.register_magics(GenMagics)
