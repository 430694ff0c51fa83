"""`cocopart schema`: the JSON schemas of every command's output."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from cocopart_cli.errors import CliError
from cocopart_cli.models import OUTPUT_MODELS, SchemaIndex, schema_of
from cocopart_cli.output import begin, console


def index() -> SchemaIndex:
    return SchemaIndex(
        models={
            name: (model.__doc__ or "").strip().splitlines()[0]
            for name, model in OUTPUT_MODELS.items()
        }
    )


def register(app: typer.Typer) -> None:
    @app.command("schema")
    def schema_cmd(
        name: Annotated[
            str | None,
            typer.Argument(
                help="Output model: " + ", ".join(OUTPUT_MODELS) + ". Omit for the list."
            ),
        ] = None,
        json_output: Annotated[
            bool, typer.Option("--json", help="Without NAME: every schema as one JSON object.")
        ] = False,
    ) -> None:
        """Publish the JSON schema of a command's --json output (pydantic models).

        **Example:** `cocopart schema compare > compare.schema.json`
        """
        begin(json_output)
        if name is not None:
            if name not in OUTPUT_MODELS:
                raise CliError(f"no schema named '{name}' (names: {', '.join(OUTPUT_MODELS)})")
            typer.echo(json.dumps(schema_of(name), indent=2))
            return
        if json_output:
            typer.echo(json.dumps({n: schema_of(n) for n in OUTPUT_MODELS}, indent=2))
            return
        t = Table(title="Output schemas (cocopart schema NAME)", title_justify="left")
        t.add_column("name")
        t.add_column("model")
        for n, doc in index().models.items():
            t.add_row(escape(n), escape(doc))
        console().print(t)
