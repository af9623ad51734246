"""`%gen` argument parsing: quotes, free parameters, cell bodies and usage errors."""

import pytest
from IPython.core.error import UsageError

from genwidgets.magic import parse_gen_args


def test_line_with_model_prompt_and_params() -> None:
    args = parse_gen_args("local:image a red rose on a table --seed 3 --aspect_ratio 1:1")
    assert args["model"] == "local:image"
    assert args["prompt"] == "a red rose on a table"
    assert args["seed"] == 3
    assert args["params"] == {"aspect_ratio": "1:1"}


def test_quotes_braces_and_dollars_are_literal() -> None:
    args = parse_gen_args('local:image \'a {curly} $HOME "quoted" rose\' --style="oil paint"')
    assert args["prompt"] == 'a {curly} $HOME "quoted" rose'
    assert args["params"] == {"style": "oil paint"}


def test_json_values_are_decoded() -> None:
    args = parse_gen_args(
        "rixapi:kling-v3/text-to-video a boat --duration 5 --audio true --d2 '\"5\"'"
    )
    assert args["params"] == {"duration": 5, "audio": True, "d2": "5"}


def test_cell_body_is_the_prompt_and_default_model() -> None:
    args = parse_gen_args("--seed 123", "a red rose\non a wooden table\n", "segmind:seedream-4.5")
    assert args["model"] == "segmind:seedream-4.5"
    assert args["prompt"] == "a red rose\non a wooden table"
    with pytest.raises(UsageError, match="cell body only"):
        parse_gen_args("local:image extra words", "the body")


@pytest.mark.parametrize(
    "line",
    [
        "local:image 'unbalanced",
        "local:image x --seed notanumber",
        "local:image x --steps",
        "x --count 0",
    ],
)
def test_bad_arguments_are_usage_errors(line: str) -> None:
    with pytest.raises(UsageError, match="usage: %gen"):
        parse_gen_args(line)


def test_flags() -> None:
    assert parse_gen_args("--models")["models"] is True
    args = parse_gen_args("local:video waves --count 3 --wait --fresh")
    assert args["count"] == 3 and args["wait"] is True and args["fresh"] is True
    assert parse_gen_args("local:video waves")["fresh"] is False


def test_a_colon_in_the_prompt_is_not_a_model() -> None:
    args = parse_gen_args("note: a cat")
    assert args["model"] == "local:image" and args["prompt"] == "note: a cat"
