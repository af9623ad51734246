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


@pytest.mark.parametrize("line", ["locl:image a typo", "Segmnd:seedream-4.5 a rose"])
def test_a_typo_in_the_provider_is_an_error_with_did_you_mean(line: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_gen_args(line)
    text = " ".join(str(caught.value).split())  # wrapped at 80 columns
    model = line.split()[0].partition(":")[2]
    expected = "local" if line.startswith("locl") else "segmind"
    assert f"did you mean {expected}:{model}?" in text.lower()
    assert "nothing was sent" in text.lower()


def test_a_provider_shaped_word_naming_nothing_lists_the_providers() -> None:
    with pytest.raises(UsageError, match="names no provider") as caught:
        parse_gen_args("style:baroque a palace")
    assert "did you mean" not in str(caught.value).lower()
    from genwidgets.providers import provider_names

    assert "Providers: " + ", ".join(provider_names()) in " ".join(str(caught.value).split())
    # named after a model, the same word is part of the prompt
    args = parse_gen_args("local:image style:baroque a palace")
    assert args["prompt"] == "style:baroque a palace"


@pytest.mark.parametrize("line", ["16:9 landscape", "https://example.org a page", "note: a"])
def test_words_that_are_not_model_shaped_stay_in_the_prompt(line: str) -> None:
    assert parse_gen_args(line)["prompt"] == line


def test_usage_errors_are_wrapped_within_80_columns() -> None:
    from genwidgets.magic import wrap

    long = "Unknown model 'imag'. Known models: " + ", ".join(f"netmind:m{i}" for i in range(40))
    lines = wrap(long, first_indent=len("UsageError: ")).splitlines()
    assert len(lines) > 3
    assert len("UsageError: " + lines[0]) <= 80 and all(len(line) <= 80 for line in lines)
    assert " ".join(lines).split() == long.split()  # nothing lost, no word broken
    with pytest.raises(UsageError) as caught:
        parse_gen_args("zzz:qqq " + "word " * 40)
    assert all(len(line) <= 80 for line in str(caught.value).splitlines())


def test_the_docstring_documents_every_option() -> None:
    import inspect

    from genwidgets.magic import GenMagics

    doc = inspect.getdoc(GenMagics.gen) or ""
    for option in ("--seed", "--count", "--wait", "--fresh", "--models", "--help", "%%gen"):
        assert option in doc, option
    assert "Examples:" in doc and "c.GenMagics.default_model" in doc
