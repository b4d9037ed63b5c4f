"""The Typer application and its command groups; commands register themselves from their modules."""
from __future__ import annotations

from enum import Enum

import typer

app = typer.Typer(help="datagen: manufacture instruction-tuning data with a teacher LLM, dedup it, publish "
                       "versioned datasets (Alpaca / ShareGPT / OpenAI messages).",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  rich_markup_mode=None)   # plain help: rich's boxes cut URLs and paths at 80 columns
run_app = typer.Typer(help="Run a recipe and publish a new dataset version.", no_args_is_help=True,
                      rich_markup_mode=None)
teacher_app = typer.Typer(help="The teacher LLM endpoint.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(run_app, name="run")
app.add_typer(teacher_app, name="teacher")


class Api(str, Enum):
    completions = "completions"
    chat = "chat"


class Variant(str, Enum):
    self_instruct = "self-instruct"
    alpaca = "alpaca"


class Schedule(str, Enum):
    overlapped = "overlapped"
    sequential = "sequential"


class JudgeMode(str, Enum):
    hard = "hard"
    all = "all"
    off = "off"


class Tokenizer(str, Enum):
    rouge_score = "rouge_score"
    unicode = "unicode"


def _version(value: bool) -> None:
    if value:
        from datagen import __version__
        print(f"datagen {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print datagen's version and exit.")) -> None:
    """datagen: manufacture instruction-tuning data with a teacher LLM, dedup it, publish versioned datasets."""
