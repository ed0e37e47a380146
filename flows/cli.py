"""The `tokenmill` command line. Each command is a plain function."""

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from flows.config import ConfigError, load_config
from flows.server import server_api_url, server_app
from flows.startup import builds_data, serving, start_ray_now, temporary_api
from tasks.stages import document_stages, stage_names, unknown_stage

app = typer.Typer(help="tokenmill: raw text corpus -> trained, fine-tuned and evaluated language model.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
app.add_typer(server_app, name="server")
console = Console()
DEFAULT_CONFIG = Path("configs/default.yaml")


# options several commands share, defined once
RECIPE = typer.Option(DEFAULT_CONFIG, "--config", "-c", help="YAML recipe")
WORKDIR = typer.Option(None, "--workdir", "-w", help="where stage outputs are, a path or a storage URL such as "
                       "s3://bucket/run (default: the recipe's)")
OVERRIDES = typer.Option([], "--set", help="override a recipe value: key.path=value (repeatable)")
UNTIL = typer.Option(None, help=f"stop after this stage ({', '.join(stage_names())}); `pack` = the data stages")


@app.callback()
def main() -> None:
    """tokenmill: raw text corpus -> trained, fine-tuned and evaluated language model."""


@app.command()
def run(
    config: Path = RECIPE,
    workdir: str | None = WORKDIR,
    overrides: list[str] = OVERRIDES,
    until: str | None = UNTIL,
    force: str | None = typer.Option(None, help="rebuild this stage and every later one even when cached"),
    ray_address: str | None = typer.Option(None, "--ray-address", help="run the data stages on this running Ray cluster "
                                           "(`<head>:6379`, `auto`) instead of a local Ray; sets ray.address"),
    hostfile: Path | None = typer.Option(None, "--hostfile", help="DeepSpeed hostfile (`<host> slots=<n>` per node): "
                                         "pretrain on those nodes; sets pretrain.launch.hostfile"),
    rehash: bool = typer.Option(False, "--rehash", help="re-read every input file to hash it, ignoring the digests "
                                "cached by size, mtime and inode (or ETag); sets ingest.rehash"),
) -> None:
    """Run the whole pipeline: ingest, clean, dedup, tokenizer, pack, pretrain, export, finetune, (sft), evaluate."""
    with config_errors():
        check_stages(("--until", until), ("--force", force))
        cfg = load_config(config, [*overrides, *option_overrides(ray_address, hostfile, rehash)], workdir)
    started = time.perf_counter()
    from flows.plan import nothing_to_do, plan_with_outputs

    planned, outputs = plan_with_outputs(cfg, until, force)
    if not rehash and (reused := nothing_to_do(cfg, planned, outputs)) is not None:
        # no flow to start: Prefect would only log cache hits
        print_summary(reused, time.perf_counter() - started)
        console.print("nothing to do: every stage's output exists (see `tokenmill plan`); no flow run was started. "
                      "`--force STAGE` rebuilds.", highlight=False, soft_wrap=True)
        return
    api = start_prefect_api()
    if rehash or builds_data(planned):
        start_ray_now(cfg)  # while the API boots
    from flows.pipeline import (
        pipeline,  # importing Prefect's flow machinery costs a second: only when a stage has work to do
    )

    with serving(api):
        manifests = run_pipeline(pipeline, cfg, until=until, force=force)
    print_summary(manifests, time.perf_counter() - started)


def start_prefect_api():
    """A server that `tokenmill server start` left running (or PREFECT_API_URL) takes the run: None. Else the
    temporary API Prefect would start, started now in its own process (flows/startup.py)."""
    if "PREFECT_API_URL" in os.environ:
        return None
    if url := use_prefect_server():
        console.print(f"Prefect server: {url}", highlight=False)
        return None
    api = temporary_api()
    console.print(f"Prefect: temporary API on {api.url} (no server configured; `tokenmill server start` keeps one, "
                  "with the UI)", highlight=False, soft_wrap=True, style="dim")
    return api


@app.command()
def plan(
    config: Path = RECIPE,
    workdir: str | None = WORKDIR,
    overrides: list[str] = OVERRIDES,
    until: str | None = UNTIL,
    force: str | None = typer.Option(None, help="as `run --force`: this stage and every later one would rebuild"),
    as_json: bool = typer.Option(False, "--json", help="print the plan as JSON"),
) -> None:
    """A dry run: for each stage, whether `run` would reuse its output or build it, and why. Starts no Ray, trains
    nothing, reads no input file (ingest uses its cached digests)."""
    with config_errors():
        check_stages(("--until", until), ("--force", force))
        cfg = load_config(config, overrides, workdir)
    from flows.plan import plan as dry_run

    planned = dry_run(cfg, until=until, force=force)
    if as_json:
        print(json.dumps(planned, indent=2))
        return
    table = Table(title=f"plan for {cfg.workdir}")
    for column in ("stage", "would", "fingerprint", "why"):
        table.add_column(column, overflow="fold")
    for entry in planned:
        action = "[green]reuse[/green]" if entry["action"] == "reuse" else "[yellow]run[/yellow]"
        table.add_row(entry["stage"], action, entry["fingerprint"], "\n".join(entry["why"]))
    console.print(table)


def run_pipeline(pipeline, cfg, **options) -> dict:
    """The flow's manifests; a failed run ends with one line saying what failed (Prefect has logged the
    traceback above it) and exit code 1."""
    try:
        return pipeline(cfg, **options)
    except Exception as err:  # noqa: BLE001 - any failure: the user needs its last word, not a second traceback
        lines = str(err).strip().splitlines() or [""]
        console.print(f"[red]run failed[/red] {type(err).__name__}: {lines[-1]}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


@contextmanager
def config_errors() -> Iterator[None]:
    """A ConfigError inside the block ends the command with its message, one line per problem, and exit code 2."""
    try:
        yield
    except ConfigError as err:
        console.print(f"[red]config error[/red] {err}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def check_stages(*options: tuple[str, str | None]) -> None:
    """ConfigError for an (option, stage) pair that names no stage, e.g. `--until pak`."""
    for option, stage in options:
        if stage is not None and (problem := unknown_stage(option, stage)):
            raise ConfigError(problem)


def option_overrides(ray_address: str | None, hostfile: Path | None, rehash: bool = False) -> list[str]:
    """`run`'s shortcut options as --set items; JSON-quoted, so YAML reads `10.0.0.1:6379` as the string it is."""
    chosen = {"ray.address": ray_address, "pretrain.launch.hostfile": None if hostfile is None else str(hostfile),
              "ingest.rehash": rehash or None}
    return [f"{key}={json.dumps(value)}" for key, value in chosen.items() if value is not None]


@app.command()
def report(run: str = typer.Argument(..., help="a work directory (its latest evaluation) or an evaluate/<fingerprint> "
                                               "folder; a path or a storage URL")) -> None:
    """Redraw report.html and report.md from a finished run's stored outputs, without retraining."""
    from infra import storage
    from tasks.eval.report import REPORT_OUTPUTS, render_report

    evaluation = latest_evaluation(run)
    if evaluation is None:
        console.print(f"[red]error[/red] {run}: no finished evaluation found (expected evaluate/<fingerprint>/manifest.json)")
        raise typer.Exit(2)
    try:
        drawn = render_report(evaluation.local_root())
    except ValueError as err:  # metrics of an older schema: say so, and how to get a current one
        console.print(f"[red]error[/red] {evaluation.path}: {err}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    if storage.is_remote(evaluation.root):  # redrawn from a local copy: the stored run gets the new pages
        for name in REPORT_OUTPUTS:
            storage.write_bytes(storage.join(evaluation.root, name), (drawn.parent / name).read_bytes())
        drawn = storage.join(evaluation.root, drawn.name)
    console.print(f"[bold]report[/bold]: {drawn}")


bench = typer.Typer(help="benchmarks: figures for docs/benchmarks.md", no_args_is_help=True)
app.add_typer(bench, name="bench")


@bench.command("train")
def bench_train(
    size: str = typer.Option("tiny", help="named model size"),
    seq_len: int = typer.Option(128, help="tokens per sequence"),
    vocab_size: int = typer.Option(4096, help="vocabulary size (GPT-2: 50304)"),
    micro_batch: int = typer.Option(16, help="sequences per step"),
    steps: int = typer.Option(30, help="optimizer steps per loop"),
    warmup: int = typer.Option(5, help="steps left out of the figure"),
    zero_stage: int = typer.Option(2, help="ZeRO stage of the DeepSpeed loop"),
    precision: str = typer.Option("auto", help="auto (bf16 on GPU, fp32 on CPU), fp32 or bf16"),
    compile: bool = typer.Option(False, "--compile", help="torch.compile both loops"),
    activation_checkpointing: bool = typer.Option(False, "--activation-checkpointing"),
    out: Path = typer.Option(Path("runs/bench-train"), help="scratch folder; bench_train.json lands here"),
) -> None:
    """Tokens/s of our DeepSpeed training loop against a plain PyTorch loop: same model, batch, 1 process."""
    from pydantic import ValidationError

    from tasks.bench.training import BenchTrainConfig
    from tasks.bench.training import bench_train as run_bench

    try:
        cfg = BenchTrainConfig(size=size, seq_len=seq_len, vocab_size=vocab_size, micro_batch_size=micro_batch, steps=steps, warmup=warmup,
                               zero_stage=zero_stage, precision=precision, compile=compile,
                               activation_checkpointing=activation_checkpointing)
    except ValidationError as err:
        console.print(f"[red]error[/red] {err}")
        raise typer.Exit(2) from None
    result = run_bench(cfg, out)
    console.print(f"bench train: {size} ({result['params'] / 1e6:.1f}M params), {result['device']}, {result['precision']}, "
                  f"ZeRO-{zero_stage}, batch {micro_batch}x{seq_len}")
    table = Table()
    for column in ("loop", "tokens/s", "MFU"):
        table.add_column(column)
    for loop in ("plain", "deepspeed"):
        mfu = result.get(f"{loop}_mfu")
        table.add_row(loop, f"{result[f'{loop}_tokens_per_s']:,.0f}", f"{mfu:.1%}" if mfu else "-")
    console.print(table)
    console.print(f"overhead (plain / deepspeed): {result['overhead']:.3f}x; figures in {out / 'bench_train.json'}", markup=False)


inspect_app = typer.Typer(help="look inside a run's stored outputs", no_args_is_help=True)
app.add_typer(inspect_app, name="inspect")


@inspect_app.command("rejected")
def inspect_rejected(
    workdir: str = typer.Option("runs/default", "--workdir", "-w", help="the run's work directory (a path or URL)"),
    reason: str | None = typer.Option(None, help="only this reason (e.g. too_short, near_duplicate)"),
    stage: str | None = typer.Option(None, help=f"only this stage ({', '.join(document_stages())})"),
    limit: int = typer.Option(10, help="examples to print"),
    width: int = typer.Option(160, help="characters of text to show"),
) -> None:
    """Print rejected documents with the rule that rejected them, from the newest output of each data stage."""
    from infra.stage import latest_output
    from tasks.data.shards import rejected_rows

    outputs = {name: latest_output(workdir, name) for name in ([stage] if stage else document_stages())}
    if not any(outputs.values()):
        console.print(f"[red]error[/red] {workdir}: no finished data stage outputs (run `tokenmill run --until pack` first)")
        raise typer.Exit(2)
    rows = [(name, r) for name, output in outputs.items() if output for r in rejected_rows(output.root, reason)]
    counts: dict[str, int] = {}
    for name, r in rows:
        counts[f"{name}:{r['reason']}"] = counts.get(f"{name}:{r['reason']}", 0) + 1
    console.print("rejected: " + (", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "none"), markup=False)
    table = Table(show_lines=True)
    for column in ("stage", "id", "reason", "detail", "text"):
        table.add_column(column, overflow="fold")
    for name, r in rows[:limit]:
        text = (r["text"] or "").replace("\n", " ")
        table.add_row(name, r["id"], r["reason"], r["detail"] or "", text[:width] + ("…" if len(text) > width else ""))
    console.print(table)


@bench.command("data")
def bench_data(
    paths: list[Path] = typer.Argument(None, help="inputs (default: data/corpus.parquet and ../shared/corpora/spam_assassin)"),
    workdir: Path = typer.Option(Path("runs/bench-data"), help="scratch work directory (emptied first)"),
    cores: int | None = typer.Option(None, help="Ray CPUs and datasets num_proc (default: all)"),
    against: str | None = typer.Option(None, "--against", help="instead, run this peer on the same JSONL in the same "
                                       "run, command to command and stage to stage: datatrove (the bench-peer extra)"),
    synthetic_docs: int | None = typer.Option(None, "--synthetic-docs", min=1, help="with --against: that many "
                                              "distinct short documents made from the bundled corpus, instead of PATHS"),
    repeats: int = typer.Option(1, "--repeats", min=1, help="with --against: both sides this many times, taking turns; "
                                "the table shows the turn with the median command ratio"),
) -> None:
    """MB/s and docs/s per data stage, beside bare encode_batch and datasets.map doing the same work."""
    import json

    from tasks.bench.data_prep import bench_data as run_bench

    paths = paths or [Path("data/corpus.parquet"), Path("../shared/corpora/spam_assassin")]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        console.print(f"[red]error[/red] no such input: {', '.join(missing)}")
        raise typer.Exit(2)
    if against is not None:
        bench_against(against, paths, workdir, cores, synthetic_docs, repeats)
        return
    if synthetic_docs is not None or repeats != 1:
        console.print("[red]error[/red] --synthetic-docs and --repeats go with --against", highlight=False)
        raise typer.Exit(2)
    try:
        result = run_bench(paths, workdir, cores)
    except ValueError as err:
        console.print(f"[red]error[/red] {err}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    (workdir / "bench_data.json").write_text(json.dumps(result, indent=2))
    console.print(f"bench data: {result['input_mb']:.1f} MB, {result['documents']:,} documents, {result['cores']} cores "
                  f"(Ray start {result['ray_start_seconds']:.1f} s, not counted)", markup=False)
    table = Table()
    for column in ("stage", "seconds", "MB/s", "docs/s"):
        table.add_column(column)
    for name, s in [*result["stages"].items(), ("end to end", result["end_to_end"])]:
        table.add_row(name, f"{s['seconds']:.2f}", f"{s['mb_per_s']:.2f}", f"{s['docs_per_s']:,.0f}")
    console.print(table)
    console.print(f"tokenize+pack vs bare encode_batch: {result['tokenize_vs_encode_batch']:.2f}x "
                  f"(encode_batch {result['baseline_encode_batch_seconds']:.2f} s; "
                  f"encode_batch_fast {result['baseline_encode_batch_fast_seconds']:.2f} s, "
                  f"{result['tokenize_vs_encode_batch_fast']:.2f}x)", markup=False)
    console.print(f"clean+dedup+pack vs datasets.map(num_proc={result['cores']}) clean+tokenize: "
                  f"{result['speedup_vs_datasets']:.2f}x faster ({result['ours_clean_dedup_pack_seconds']:.2f} s vs "
                  f"{result['baseline_datasets_seconds']:.2f} s)", markup=False)


def bench_against(peer: str, paths: list[Path], workdir: Path, cores: int | None, synthetic_docs: int | None,
                  repeats: int = 1) -> None:
    """`bench data --against datatrove`: both pipelines on the same JSONL, the table of times and ratios."""
    from rich.markup import escape

    from tasks.bench.peer_compare import bench_against_datatrove, peer_missing

    problem = f"--against {peer}: the only peer is datatrove" if peer != "datatrove" else peer_missing()
    if problem:  # escaped: the install command's `.[bench-peer]` would read as markup
        console.print(f"[red]error[/red] {escape(problem)}", highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    try:
        result = bench_against_datatrove(paths, workdir, cores or os.cpu_count() or 1, synthetic_docs, repeats)
    except ValueError as err:
        console.print(f"[red]error[/red] {err}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    ours, peer = result["ours"], result["datatrove"]
    console.print(f"bench data --against datatrove: {result['input_mb']:.1f} MB, {ours['documents_in']:,} documents "
                  f"in {result['input']} (datatrove read {peer['documents_in']:,}), {result['cores']} cores", markup=False,
                  soft_wrap=True)
    table = Table()
    for column in ("tokenmill", "s", "datatrove", "s", "datatrove / tokenmill"):
        table.add_column(column)
    for stage, pair in result["pairs"].items():
        table.add_row(stage, f"{pair['ours_seconds']:.2f}", pair["datatrove"], f"{pair['datatrove_seconds']:.2f}",
                      f"{pair['ratio']:.2f}x")
    for stage, what in result["ours_only"].items():
        table.add_row(stage, f"{ours['stages'][stage]:.2f}", what, "-", "-")
    table.add_row("command", f"{ours['command_seconds']:.2f}", "command", f"{peer['command_seconds']:.2f}",
                  f"{result['command_ratio']:.2f}x")
    console.print(table)
    if len(result["runs"]) > 1:
        console.print("command to command, turn by turn: " + ", ".join(
            f"{r['ours_seconds']:.1f} s vs {r['datatrove_seconds']:.1f} s = {r['command_ratio']:.2f}x" for r in result["runs"]),
            markup=False, soft_wrap=True)
    console.print(f"documents kept after filters / dedup: tokenmill {ours['after_clean']:,} / {ours['after_dedup']:,}, "
                  f"datatrove {peer['after_clean']:,} / {peer['after_dedup']:,}", markup=False)
    console.print("left out of datatrove's side (ours does it): " + "; ".join(peer["left_out"]) +
                  f". Stage seconds are the manifests' build times; figures in {workdir / 'bench_data.json'}",
                  markup=False, soft_wrap=True)


def latest_evaluation(run: str):
    """The evaluate output `run` names: an evaluate/<fingerprint> folder, or the newest one of a workdir."""
    from infra import storage
    from infra.stage import latest_output, read_manifest

    if storage.exists(storage.join(run, "manifest.json")) and (found := read_manifest(storage.normalize(run))):
        return found if found.stage == "evaluate" else None
    return latest_output(storage.normalize(run), "evaluate")


def print_summary(manifests: dict, total_seconds: float) -> None:
    table = Table(title="stages")
    for column in ("stage", "status", "seconds", "fingerprint", "counts"):
        table.add_column(column)
    for name, m in manifests.items():
        counts = ", ".join(f"{k}={v}" for k, v in m.counts.items() if k in ("docs_in", "kept", "rejected", "train_blocks", "steps", "vocab_size", "test_examples"))
        table.add_row(name, "cached" if m.cached else "ran", f"{m.seconds:.1f}", m.fingerprint, counts)
    console.print(table)
    console.print(f"total wall time: {total_seconds:.1f} s")
    if "evaluate" not in manifests:
        return
    report = manifests["evaluate"]
    headline = report.stats["headline"]
    console.print(f"[bold]headline[/bold]: {report.stats.get('verdict', '')}\n  " + ", ".join(
        f"{k}={v:.4f}" if isinstance(v, float) else f"{k}=[{v[0]:.4f}, {v[1]:.4f}]" if isinstance(v, list) else f"{k}={v}"
        for k, v in headline.items()), highlight=False, soft_wrap=True)
    console.print(f"[bold]report[/bold]: {report.file('report')}")
    console.print(f"[bold]metrics[/bold]: {report.file('metrics')}")


def use_prefect_server() -> str | None:
    """The Prefect API this command talks to: PREFECT_API_URL, else a server `tokenmill server start` left running;
    None means Prefect's ephemeral API on the local database (under PREFECT_HOME)."""
    # the machines this runs on often have no route out: Prefect's telemetry would only log errors
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    return server_api_url()


@app.command()
def serve(
    config: Path = typer.Option(DEFAULT_CONFIG, "--config", "-c", help="YAML recipe; its `schedules:` start the deployments"),
    workdir: str | None = typer.Option(None, "--workdir", "-w", help="where stage outputs go, a path or a storage URL "
                                       "such as s3://bucket/run (default: the recipe's)"),
    overrides: list[str] = typer.Option([], "--set", help="override a recipe value: key.path=value (repeatable)"),
    watch: bool = typer.Option(False, "--watch", help="poll the recipe's ingest.paths and start the data deployment "
                               "when files are new or changed (unchanged over two polls)"),
    poll: float = typer.Option(30.0, "--poll", min=0.2, help="seconds between two looks at the corpus (--watch)"),
) -> None:
    """Register the full, data and train deployments on the Prefect server and run them, on schedule, on demand,
    or (`--watch`) when corpus files arrive."""
    api_url = use_prefect_server()
    if api_url is None:
        console.print("[red]error[/red] no Prefect server to register deployments with: start one with "
                      "`tokenmill server start`, or set PREFECT_API_URL", highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    from flows.deploy import deployments  # imports Prefect and Ray: only when serving
    from flows.deploy import serve as serve_deployments

    with config_errors():
        built = deployments(config, overrides, workdir, watch=watch)
        cfg = load_config(config, overrides, workdir)
    console.print(f"Prefect server: {api_url}", highlight=False)
    for deployment in built:
        crons = ", ".join(s.schedule.cron for s in deployment.schedules or []) or "on demand only"
        console.print(f"pipeline/{deployment.name}: {crons}" + (" + new corpus files" if deployment.triggers else ""),
                      highlight=False, markup=False)
    if watch:
        start_watching(cfg, poll)
    serve_deployments(built)


def start_watching(cfg, poll: float) -> None:
    """The corpus watcher, in a daemon thread beside the deployments' runner (flows/watch.py)."""
    import threading

    from flows.deploy import deployment_name
    from flows.watch import Watcher, watch_forever
    from infra import storage

    state = storage.join(storage.normalize(cfg.workdir), ".tokenmill", "watch", f"{cfg.name}.json")
    watcher = Watcher([str(p) for p in cfg.ingest.paths], state)
    deployment = deployment_name(cfg, "data")
    threading.Thread(target=watch_forever, args=(watcher, cfg.name, deployment, poll, threading.Event()),
                     daemon=True, name="corpus-watcher").start()


@app.command()
def runs(limit: int = typer.Option(10, "--limit", "-n", min=1, help="how many of the latest runs")) -> None:
    """Recent pipeline runs from the Prefect API: state, start, duration and headline metrics."""
    from flows.server import health_ok

    api_url = use_prefect_server()
    if api_url is not None and not health_ok(api_url):
        console.print(f"[red]error[/red] no Prefect API answers at {api_url}: start it with `tokenmill server start`, "
                      f"or unset PREFECT_API_URL to read the local database", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    from flows.deploy import format_duration, format_started, list_runs

    found = list_runs(limit)
    if not found:
        console.print(f"no pipeline runs recorded at {api_url or 'the local Prefect database'}", highlight=False)
        return
    table = Table(title=f"pipeline runs ({api_url or 'local Prefect database'})")
    for column in ("run", "state", "started", "duration", "scope", "headline"):
        table.add_column(column)
    for r in found:
        headline = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r["headline"].items())
        table.add_row(r["name"], r["state"], format_started(r["started"]), format_duration(r["duration"]), r["scope"],
                      headline or "-")
    console.print(table)


@app.command()
def lineage(
    location: str = typer.Argument(..., help="an output folder (<workdir>/<stage>/<fingerprint>) or any file in one, "
                                   "e.g. a model's model.safetensors; a path or a storage URL"),
    as_json: bool = typer.Option(False, "--json", help="print the chain as JSON"),
) -> None:
    """The chain from an output back to the input files and settings that made it, read from the manifests."""
    from infra.lineage import chain, output_of

    try:
        workdir, manifest = output_of(location)
    except ValueError as err:
        console.print(f"[red]error[/red] {err}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    found = chain(workdir, manifest)
    if as_json:
        print(json.dumps(found, indent=2))
        return
    for link in found:
        made_from = ", ".join(link["from"]) or "-"
        console.print(f"[bold]{link['stage']}[/bold] {link['fingerprint']}  code {link['code'] or '(not recorded)'}  "
                      f"from {made_from}", highlight=False, soft_wrap=True)
        if link["libraries"]:
            console.print("  libraries: " + ", ".join(f"{k} {v}" for k, v in link["libraries"].items()),
                          highlight=False, soft_wrap=True, markup=False)
        if link["config"]:
            console.print(f"  config: {json.dumps(link['config'], sort_keys=True)}", highlight=False, soft_wrap=True,
                          markup=False)
        for entry in link["inputs"][:10]:
            console.print(f"  input: {entry}", highlight=False, soft_wrap=True, markup=False)
        if len(link["inputs"]) > 10:
            console.print(f"  ... and {len(link['inputs']) - 10} more inputs (--json lists all)", highlight=False)


@app.command()
def gc(
    workdir: str = typer.Argument(..., help="the work directory, a path or a storage URL"),
    keep: int = typer.Option(3, "--keep", min=0, help="keep what the last N finished runs used"),
    pin: list[str] = typer.Option([], "--pin", help="a run id (or its prefix) whose outputs are kept for good"),
    checkpoints: bool = typer.Option(False, "--checkpoints", help="also remove resumable training folders"),
    delete: bool = typer.Option(False, "--delete", help="remove them; without it gc only says what it would remove"),
) -> None:
    """Remove outputs that none of the last N runs (nor a pinned or running one) uses, and what killed runs left."""
    from infra.gc import collect, remove
    from infra.runs import pin as pin_run

    try:
        for run_id in pin:
            console.print(f"pinned run {pin_run(workdir, run_id).run_id}", highlight=False)
        found = collect(workdir, keep=keep, checkpoints=checkpoints)
    except ValueError as err:
        console.print(f"[red]error[/red] {err}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    for location, why in found.remove:
        console.print(f"{'removing' if delete else 'would remove'} {location}  ({why})", highlight=False,
                      soft_wrap=True, markup=False)
    if delete:
        remove(found)
    verb = "freed" if delete else "would free"
    console.print(f"{len(found.remove)} folders, {verb} {found.bytes_freed / 2**20:.1f} MiB; kept the outputs of runs "
                  f"{', '.join(found.keep_runs)}" + ("" if delete else " (dry run: --delete to remove)"), highlight=False,
                  soft_wrap=True)


@app.command()
def reprocess(
    corpus: Path = typer.Option(..., "--corpus", help="corpus file or folder to run on, in place of the recipe's ingest.paths"),
    from_stage: str | None = typer.Option(None, "--from", help="rebuild this stage and every later one even when cached"),
    until: str | None = typer.Option(None, help="stop after this stage; `pack` = the data stages"),
    config: Path = typer.Option(DEFAULT_CONFIG, "--config", "-c", help="YAML recipe"),
    workdir: str | None = typer.Option(None, "--workdir", "-w", help="where stage outputs go, a path or a storage URL "
                                       "such as s3://bucket/run (default: the recipe's)"),
) -> None:
    """Re-run the pipeline on a changed corpus: content-addressed stages reuse every shard and output that did not change."""
    with config_errors():
        check_stages(("--from", from_stage), ("--until", until))
        cfg = load_config(config, [f"ingest.paths=[{json.dumps(str(corpus))}]"], workdir)
    if api_url := use_prefect_server():
        console.print(f"Prefect server: {api_url}", highlight=False)
    from flows.pipeline import pipeline

    started = time.perf_counter()
    manifests = run_pipeline(pipeline, cfg, until=until, force=from_stage)
    print_summary(manifests, time.perf_counter() - started)
    for name, m in manifests.items():
        if "units_reused" in m.counts and not m.cached:
            console.print(f"{name}: {m.counts['units_reused']} of {m.stats.get('num_shards', '?')} shards reused "
                          f"from earlier runs", highlight=False)


if __name__ == "__main__":
    app()
