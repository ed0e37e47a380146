"""The `tokenmill` command line. Each command is a plain function."""

import os
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from flows.config import ConfigError, load_config

app = typer.Typer(help="tokenmill: raw text corpus -> trained, fine-tuned and evaluated language model.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
console = Console()
DEFAULT_CONFIG = Path("configs/default.yaml")


@app.callback()
def main() -> None:
    """tokenmill: raw text corpus -> trained, fine-tuned and evaluated language model."""


@app.command()
def run(
    config: Path = typer.Option(DEFAULT_CONFIG, "--config", "-c", help="YAML recipe"),
    workdir: Path | None = typer.Option(None, "--workdir", "-w", help="where stage outputs go (default: the recipe's)"),
    overrides: list[str] = typer.Option([], "--set", help="override a recipe value: key.path=value (repeatable)"),
) -> None:
    """Run the whole pipeline: ingest, clean, dedup, tokenizer, pack, pretrain, finetune, evaluate."""
    try:
        cfg = load_config(config, overrides, workdir)
    except ConfigError as err:
        console.print(f"[red]config error[/red] {err}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    # the machines this runs on often have no route out: Prefect's telemetry would only log errors
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from flows.pipeline import pipeline  # importing Prefect and Ray costs seconds: only when running

    started = time.perf_counter()
    manifests = pipeline(cfg)
    print_summary(manifests, time.perf_counter() - started)


@app.command()
def report(run: Path = typer.Argument(..., help="a work directory (its latest evaluation) or an evaluate/<fingerprint> folder")) -> None:
    """Redraw report.html and report.md from a finished run's stored outputs, without retraining."""
    from tasks.report import render_report

    folder = latest_evaluation(run)
    if folder is None:
        console.print(f"[red]error[/red] {run}: no finished evaluation found (expected evaluate/<fingerprint>/manifest.json)")
        raise typer.Exit(2)
    console.print(f"[bold]report[/bold]: {render_report(folder)}")


def latest_evaluation(run: Path) -> Path | None:
    if (run / "manifest.json").exists() and (run / "metrics.json").exists():
        return run
    finished = [p.parent for p in (run / "evaluate").glob("*/manifest.json")]
    return max(finished, key=lambda p: p.stat().st_mtime) if finished else None


def print_summary(manifests: dict, total_seconds: float) -> None:
    table = Table(title="stages")
    for column in ("stage", "status", "seconds", "fingerprint", "counts"):
        table.add_column(column)
    for name, m in manifests.items():
        counts = ", ".join(f"{k}={v}" for k, v in m.counts.items() if k in ("docs_in", "kept", "rejected", "train_blocks", "steps", "vocab_size", "test_examples"))
        table.add_row(name, "cached" if m.cached else "ran", f"{m.seconds:.1f}", m.fingerprint, counts)
    console.print(table)
    report = manifests["evaluate"]
    headline = report.stats["headline"]
    console.print("[bold]headline[/bold]: " + ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                                                     for k, v in headline.items()))
    console.print(f"[bold]report[/bold]: {report.file('report')}")
    console.print(f"[bold]metrics[/bold]: {report.file('metrics')}")
    console.print(f"total wall time: {total_seconds:.1f} s")


if __name__ == "__main__":
    app()
