"""`strom completion bash|zsh|fish`: the shell completion script (click's own)."""

from __future__ import annotations

from typing import Final

import click
from click.shell_completion import get_completion_class

SHELLS: Final = ("bash", "zsh", "fish")
PROG: Final = "strom"
COMPLETE_VAR: Final = "_STROM_COMPLETE"


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the completion script for SHELL.

    \b
    bash:  eval "$(strom completion bash)"        (e.g. in ~/.bashrc)
    zsh:   eval "$(strom completion zsh)"         (e.g. in ~/.zshrc)
    fish:  strom completion fish | source         (e.g. in ~/.config/fish/config.fish)"""
    cls = get_completion_class(shell)
    if cls is None:  # pragma: no cover - click ships all three
        raise click.UsageError(f"click has no completion for {shell}")
    root = ctx.find_root().command
    click.echo(cls(root, {}, PROG, COMPLETE_VAR).source())
