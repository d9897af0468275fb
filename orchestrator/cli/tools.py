"""Commands that drive no real checkout: the local sandbox, the demo, the state diagram and the
effective settings."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys

import typer

from orchestrator.cli.plumbing import ExitCode, JsonOption, cli_errors, fail, run, settings
from orchestrator.errors import InvalidRequest

sandbox_app = typer.Typer(
    help="The built-in local Violet sandbox.", no_args_is_help=True, rich_markup_mode=None
)


def register(app: typer.Typer) -> None:
    """`diagram`, `config` and `demo` at the top level; the `sandbox` group."""
    app.command()(diagram)
    app.command()(config)
    app.command()(demo)
    app.add_typer(sandbox_app, name="sandbox")


@sandbox_app.command("serve")
@cli_errors
def sandbox_serve(
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8040, "--port", min=0, max=65535, help="0 picks a free port."),
    latency_ms: float = typer.Option(0.0, "--latency-ms", min=0, help="Added to every call."),
    first_cart_id: int | None = typer.Option(
        None,
        "--first-cart-id",
        min=1,
        help="The first cart id handed out (default 80000). In front of a database that keeps an "
        "earlier sandbox's checkouts, start above its max(violet_order_id): ids are unique there.",
    ),
    allow_remote_control: bool = typer.Option(
        False,
        "--allow-remote-control",
        help="On a --host other hosts can reach, serve the unauthenticated /_sandbox control "
        "surface too (left out by default).",
    ),
) -> None:
    """Serve the local Violet sandbox over HTTP until interrupted (Ctrl-C)."""
    from orchestrator.sandbox import SandboxConfig, serve

    typer.echo(
        "point the orchestrator at it with VIOLET_BASE_URL=http://HOST:PORT/v1 and the sandbox "
        "credentials (docs/cli.md)",
        err=True,
    )
    sandbox_config = SandboxConfig(latency_ms=latency_ms)
    if first_cart_id is not None:
        sandbox_config = dataclasses.replace(sandbox_config, first_cart_id=first_cart_id)
    serve(host, port, sandbox_config, allow_remote_control=allow_remote_control)


@cli_errors
def diagram(
    fmt: str = typer.Option("mermaid", "--format", help="mermaid (no dependencies) or svg."),
) -> None:
    """The checkout state graph, drawn from the state machine itself."""
    from orchestrator.engine import machine

    if fmt == "mermaid":
        typer.echo(machine.mermaid())
        return
    if fmt != "svg":
        raise InvalidRequest([("--format", "must be mermaid or svg")])
    try:
        if importlib.util.find_spec("pygraphviz") is None:
            # transitions would quietly fall back to mermaid text in an .svg file
            raise ImportError("pygraphviz is not installed")
        svg = machine.svg()
    except (ImportError, OSError) as exc:
        raise fail(
            ExitCode.BAD_INPUT,
            f"svg needs graphviz and pygraphviz ({exc}); use --format mermaid, "
            "or `pip install pygraphviz` with the graphviz system library",
        ) from None
    sys.stdout.write(svg)


@cli_errors
def config() -> None:
    """Print the effective settings (secrets masked)."""
    for name, value in settings().public_values().items():
        typer.echo(f"{name} = {value}")


@cli_errors
def demo(as_json: bool = JsonOption) -> None:
    """The whole flow on this machine, offline: checkouts, a crash and its recovery, a bag shipped
    and one refunded after submit, timelines."""
    from orchestrator.cli import demo as demo_module
    from orchestrator.cli import render

    current = settings()
    out = render.Output()
    progress = (lambda line: None) if as_json else out.line
    result = run(demo_module.run_demo(current, progress=progress))
    if as_json:
        out.json(result.to_json())
    else:
        demo_module.show(out, result)
    if not result.ok:
        raise fail(ExitCode.CHECKOUT_FAILED, "the demo did not go as expected (see above)")
