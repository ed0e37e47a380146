"""`tokenmill server start|stop|status`: a real Prefect server and UI, running in the background.

Its state lives under `<workdir>/server/`: `server.pid`, `server.json` (where it listens), `server.log`, and by
default the SQLite database `prefect.db`. Runs reach it through `PREFECT_API_URL`.
"""

import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.markup import escape

server_app = typer.Typer(help="the Prefect server and UI: start it in the background, stop it, ask how it is",
                         no_args_is_help=True)
console = Console(soft_wrap=True, highlight=False)  # URLs and paths stay whole on one line
DEFAULT_WORKDIR = Path("runs")
AUTH_ENV = "PREFECT_SERVER_API_AUTH_STRING"
DATABASE_SCHEMES = ("sqlite+aiosqlite", "postgresql+asyncpg")  # the async drivers Prefect's server needs
# health checks talk to our own server: never through an HTTP proxy the environment may name
_direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def server_dir(workdir: Path) -> Path:
    return Path(workdir) / "server"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost may resolve to anything
        return False


def url_host(host: str) -> str:
    """The address a client on this machine uses for a server bound to `host`."""
    if host in ("0.0.0.0", "", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def health_ok(api_url: str, timeout: float = 2.0) -> bool:
    try:
        with _direct.open(f"{api_url}/health", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def port_is_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def process_alive(pid: int) -> bool:
    """True while `pid` runs; reaps it first when it is our own child (tests start and stop in one process)."""
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_state(workdir: Path) -> dict | None:
    """The running server's pid and URLs, or None when there is no live server started by us (stale files go)."""
    folder = server_dir(workdir)
    try:
        pid = int((folder / "server.pid").read_text().strip())
        state = json.loads((folder / "server.json").read_text())
    except (OSError, ValueError):
        return None
    # we started it as a session leader: a pid that is not one was reused by another program
    if not process_alive(pid) or process_group(pid) != pid:
        forget(workdir)
        return None
    return state | {"pid": pid}


def process_group(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def forget(workdir: Path) -> None:
    for name in ("server.pid", "server.json"):
        (server_dir(workdir) / name).unlink(missing_ok=True)


def server_api_url(workdir: Path = DEFAULT_WORKDIR) -> str | None:
    """The API URL of a server that `tokenmill server start` left running under `workdir`, if it is healthy."""
    state = read_state(workdir)
    if state is None or not health_ok(state["api_url"], timeout=1.0):
        return None
    return state["api_url"]


def redact(database_url: str) -> str:
    parts = urlsplit(database_url)
    if parts.password is None:
        return database_url
    return database_url.replace(f":{parts.password}@", ":***@", 1)


def server_env(workdir: Path, host: str, port: int, database_url: str, ui_api_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PREFECT_API_URL", None)  # the server is the API; a client setting here would only confuse its UI
    env.update(
        PREFECT_HOME=str(server_dir(workdir) / "home"),
        PREFECT_API_DATABASE_CONNECTION_URL=database_url,
        PREFECT_SERVER_API_HOST=host,
        PREFECT_SERVER_API_PORT=str(port),
        PREFECT_UI_API_URL=os.environ.get("PREFECT_UI_API_URL", ui_api_url),
        # the machines this runs on often have no route out: telemetry would only log errors
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    return env


def spawn(workdir: Path, host: str, port: int, env: dict[str, str]) -> subprocess.Popen:
    """`prefect server start` from this environment, detached in its own session, output to server.log."""
    folder = server_dir(workdir)
    (folder / "home").mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)]
    with open(folder / "server.log", "w") as log:
        return subprocess.Popen(cmd, env=env, cwd=folder, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


def wait_healthy(proc: subprocess.Popen, api_url: str, timeout: float) -> str | None:
    """None once the server answers /health; else why it did not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"the server exited with code {proc.returncode}"
        if health_ok(api_url, timeout=1.0):
            return None
        time.sleep(0.5)
    return f"no healthy answer from {api_url}/health within {timeout:.0f} s"


def log_tail(workdir: Path, num_lines: int = 30) -> str:
    log = server_dir(workdir) / "server.log"
    return "\n".join(log.read_text(errors="replace").splitlines()[-num_lines:]) if log.exists() else "(no log)"


def terminate(pid: int, grace_s: float = 20.0) -> None:
    """SIGTERM the server's process group, SIGKILL it if it is still there after `grace_s`."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not process_alive(pid):
                return
            time.sleep(0.2)


def fail(message: str, code: int) -> None:
    console.print(f"[red]error[/red] {escape(message)}")
    raise typer.Exit(code)


def check_start_options(host: str, database_url: str | None) -> None:
    """User mistakes, caught before anything starts: exit code 2."""
    if not is_loopback(host) and not os.environ.get(AUTH_ENV):
        fail(f"--host {host}: binding to a non-loopback address exposes the API; set {AUTH_ENV}=user:password "
             f"(basic auth) in the environment first, or bind to 127.0.0.1", 2)
    if database_url and urlsplit(database_url).scheme not in DATABASE_SCHEMES:
        fail(f"--database-url: scheme {urlsplit(database_url).scheme!r} is not one of {', '.join(DATABASE_SCHEMES)} "
             f"(e.g. postgresql+asyncpg://user:password@host:5432/prefect)", 2)


@server_app.command()
def start(
    host: str = typer.Option("127.0.0.1", help=f"address to bind; anything but loopback needs {AUTH_ENV}"),
    port: int = typer.Option(4200, min=1, max=65535, help="port to bind"),
    workdir: Path = typer.Option(DEFAULT_WORKDIR, "--workdir", "-w", help="the server's files go to <workdir>/server/"),
    database_url: str | None = typer.Option(
        None, help="PostgreSQL instead of SQLite: postgresql+asyncpg://user:password@host:5432/prefect"),
    timeout: float = typer.Option(60.0, help="seconds to wait for the server to answer /health"),
) -> None:
    """Start the Prefect server and UI in the background (SQLite under the workdir unless --database-url)."""
    check_start_options(host, database_url)
    workdir = workdir.resolve()
    running = read_state(workdir)
    if running is not None:
        console.print(f"already running: {running['ui_url']} (pid {running['pid']}); "
                      f"PREFECT_API_URL={running['api_url']}")
        return
    if not port_is_free(host, port):
        fail(f"{host}:{port} is already in use; pick another with --port", 1)
    folder = server_dir(workdir)
    database_url = database_url or f"sqlite+aiosqlite:///{folder / 'prefect.db'}"
    ui_host = socket.gethostname() if host in ("0.0.0.0", "::") else url_host(host)
    ui_url, api_url = f"http://{url_host(host)}:{port}", f"http://{url_host(host)}:{port}/api"
    proc = spawn(workdir, host, port, server_env(workdir, host, port, database_url, f"http://{ui_host}:{port}/api"))
    (folder / "server.pid").write_text(f"{proc.pid}\n")
    (folder / "server.json").write_text(json.dumps({"host": host, "port": port, "ui_url": ui_url, "api_url": api_url,
                                                    "database": redact(database_url)}, indent=2))
    problem = wait_healthy(proc, api_url, timeout)
    if problem:
        terminate(proc.pid)
        forget(workdir)
        fail(f"{problem}; last lines of {folder / 'server.log'}:\n{log_tail(workdir)}", 1)
    print_started(ui_url, api_url, proc.pid, redact(database_url))


def print_started(ui_url: str, api_url: str, pid: int, database: str) -> None:
    console.print(f"[bold]Prefect server[/bold] running (pid {pid}), database {database}")
    console.print(f"UI:  {ui_url}")
    console.print(f"API: export PREFECT_API_URL={api_url}")
    if os.environ.get(AUTH_ENV):
        console.print(f"clients also need PREFECT_API_AUTH_STRING set to the same user:password as {AUTH_ENV}")


@server_app.command()
def stop(workdir: Path = typer.Option(DEFAULT_WORKDIR, "--workdir", "-w", help="the workdir the server was started with")) -> None:
    """Stop the server that `tokenmill server start` left running."""
    state = read_state(workdir)
    if state is None:
        console.print(f"not running (no live server recorded in {server_dir(workdir)})")
        return
    terminate(state["pid"])
    forget(workdir)
    console.print(f"stopped the Prefect server at {state['ui_url']} (pid {state['pid']})")


@server_app.command()
def status(workdir: Path = typer.Option(DEFAULT_WORKDIR, "--workdir", "-w", help="the workdir the server was started with")) -> None:
    """Say whether the server runs, where, and whether it answers /health. Exit code 0 only when it runs healthy."""
    state = read_state(workdir)
    if state is None:
        console.print(f"not running (no live server recorded in {server_dir(workdir)})")
        raise typer.Exit(1)
    healthy = health_ok(state["api_url"])
    console.print(f"running: {state['ui_url']} (pid {state['pid']}, {'healthy' if healthy else 'not answering /health'}, "
                  f"database {state['database']})")
    console.print(f"PREFECT_API_URL={state['api_url']}")
    if not healthy:
        raise typer.Exit(1)
