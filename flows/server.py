"""`tokenmill server start|stop|status`: Prefect's own server (`prefect server start`, `prefect server stop`) with
tokenmill's defaults on top: a loopback bind unless an auth string is set, a SQLite database under the workdir (or a
PostgreSQL URL), and the active Prefect profile's PREFECT_API_URL pointed at the server until `stop` restores its
previous value, so that every later `tokenmill` and `prefect` command uses it, whatever `--workdir` it started with.

Not `prefect server start --background`: in Prefect 3.8.8 that leaves the server writing into pipes nobody reads once
the command exits, and the server dies at its next log line. We start the same command detached, its output in
PREFECT_HOME/server.log, its pid in Prefect's own PREFECT_HOME/server.pid, where `prefect server stop` looks.
"""

import contextlib
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

server_app = typer.Typer(help="Prefect's server and UI in the background: start it, stop it, ask how it is",
                         no_args_is_help=True)
console = Console(soft_wrap=True, highlight=False)  # URLs and paths stay whole on one line
DEFAULT_WORKDIR = Path("runs")
AUTH_ENV = "PREFECT_SERVER_API_AUTH_STRING"
DATABASE_SCHEMES = ("sqlite+aiosqlite", "postgresql+asyncpg")  # the async drivers Prefect's server needs
STATE_FILE = "tokenmill-server.json"  # in PREFECT_HOME: the URL `start` set in which profile, and the one it replaced
IGNORED_WORKDIR = typer.Option(None, "--workdir", "-w", hidden=True, help="ignored: the server is found by profile")
_direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy the environment names


def is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost may resolve to anything
        return False


def health_ok(api_url: str, timeout: float = 2.0) -> bool:
    try:
        with _direct.open(f"{api_url}/health", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def server_api_url() -> str | None:
    """The API a Prefect client started now would use: PREFECT_API_URL from the environment, else from the active
    profile (where `start` puts it); None: Prefect's ephemeral local API."""
    from prefect.settings import Settings

    return Settings().api.url


def redact(text: str, url: str | None) -> str:
    """`text` without the password in `url`, nor the server's auth string."""
    for secret in (urlsplit(url).password if url else None, os.environ.get(AUTH_ENV, ":").partition(":")[2]):
        text = text.replace(secret, "***") if secret else text
    return text


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


def prefect_home() -> Path:
    from prefect.settings import get_current_settings

    return Path(get_current_settings().home)


def profile_api_url(url: str | None = None, name: str | None = None, write: bool = False) -> tuple[str, str | None]:
    """(name, PREFECT_API_URL) of profile `name`, the active one by default; `write` first sets it to `url` (None
    unsets it), as `prefect config set/unset` do."""
    from prefect.context import get_settings_context
    from prefect.settings import PREFECT_API_URL
    from prefect.settings.profiles import load_profiles, save_profiles

    name, profiles = name or get_settings_context().profile.name, load_profiles()
    if write:
        profiles.update_profile(name, {PREFECT_API_URL: url})
        save_profiles(profiles)
    return name, profiles[name].settings.get(PREFECT_API_URL) if name in profiles.names else None


def pid_alive(pid_file: Path) -> bool:
    try:
        os.kill(int(pid_file.read_text().strip() or 0), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:  # alive, someone else's
        return True
    return int(pid_file.read_text().strip() or 0) > 0


def launch(home: Path, host: str, port: int, env: dict[str, str], timeout: float) -> str | None:
    """`prefect server start` detached; None once it answers /health, else why it did not (and it is gone)."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "server.pid").touch(mode=0o600, exist_ok=False)  # Prefect's guard: one background server per home
    with open(home / "server.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port),
                                 "--analytics-off"], env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    (home / "server.pid").write_text(str(proc.pid))
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if health_ok(env["PREFECT_API_URL"], timeout=1.0):
            return None
        time.sleep(0.5)
    problem = f"the server exited with code {proc.returncode}" if proc.poll() is not None else \
        f"no healthy answer from {env['PREFECT_API_URL']}/health within {timeout:.0f} s"
    proc.kill()
    proc.wait()
    (home / "server.pid").unlink()
    tail = "\n".join((home / "server.log").read_text(errors="replace").splitlines()[-30:])
    return f"{problem}; last lines of {home / 'server.log'}:\n{tail}"


@server_app.command()
def start(
    host: str = typer.Option("127.0.0.1", help=f"address to bind; anything but loopback needs {AUTH_ENV}"),
    port: int = typer.Option(4200, min=1, max=65535, help="port to bind"),
    workdir: Path = typer.Option(DEFAULT_WORKDIR, "--workdir", "-w", help="SQLite goes to <workdir>/server/prefect.db"),
    database_url: str | None = typer.Option(
        None, help="PostgreSQL instead of SQLite: postgresql+asyncpg://user:password@host:5432/prefect"),
    timeout: float = typer.Option(60.0, help="seconds to wait for the server to answer /health"),
) -> None:
    """Start the Prefect server and UI in the background and point the active Prefect profile's PREFECT_API_URL at it."""
    check_start_options(host, database_url)
    home = prefect_home()
    state = json.loads((home / STATE_FILE).read_text()) if (home / STATE_FILE).exists() else None
    if state and health_ok(state["api_url"], timeout=1.0):
        console.print(f"already running: PREFECT_API_URL={state['api_url']}; `tokenmill server stop` stops it")
        return
    if (home / "server.pid").exists() and not pid_alive(home / "server.pid"):
        (home / "server.pid").unlink()  # left by a server that died without `stop`: nothing to protect
    if (home / "server.pid").exists():
        fail(f"{home / 'server.pid'} names a server started before: `tokenmill server stop` first", 1)
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:  # else /health answers another
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            fail(f"{host}:{port} is already in use; pick another with --port", 1)
    if not database_url:
        (workdir.resolve() / "server").mkdir(parents=True, exist_ok=True)
        database_url = f"sqlite+aiosqlite:///{workdir.resolve() / 'server' / 'prefect.db'}"
    url_host = "127.0.0.1" if host in ("0.0.0.0", "::") else f"[{host}]" if ":" in host else host
    api_url = f"http://{url_host}:{port}/api"
    env = dict(os.environ, PREFECT_SERVER_DATABASE_CONNECTION_URL=database_url, PREFECT_API_URL=api_url)
    env.pop("PREFECT_API_DATABASE_CONNECTION_URL", None)  # the older name of the same setting
    ui_host = socket.gethostname() if host in ("0.0.0.0", "::") else url_host
    env.setdefault("PREFECT_UI_API_URL", f"http://{ui_host}:{port}/api")  # what a browser elsewhere can reach
    if problem := launch(home, host, port, env, timeout):
        fail(redact(problem, database_url), 1)
    name, previous = profile_api_url()
    if state and previous == state["api_url"]:  # a server that died without `stop`: keep what was there before it
        previous = state["previous"]
    profile_api_url(api_url, name, write=True)
    (home / STATE_FILE).write_text(json.dumps({"api_url": api_url, "previous": previous, "profile": name}))
    console.print(f"[bold]Prefect server[/bold] running, database {escape(redact(database_url, database_url))}")
    console.print(f"UI:  {api_url.removesuffix('/api')}, log: {home / 'server.log'}")
    console.print(f"PREFECT_API_URL={api_url} in Prefect profile {name!r} until `tokenmill server stop`")
    if os.environ.get("PREFECT_API_URL", api_url) != api_url:
        console.print("note: PREFECT_API_URL in this shell's environment overrides the profile: unset it to use this server")
    if os.environ.get(AUTH_ENV):
        console.print(f"clients also need PREFECT_API_AUTH_STRING set to the same user:password as {AUTH_ENV}")


@server_app.command()
def stop(workdir: Path | None = IGNORED_WORKDIR) -> None:
    """Stop the background server (`prefect server stop`) and restore the profile's previous PREFECT_API_URL."""
    pid_file = prefect_home() / "server.pid"
    pid = int(pid_file.read_text().strip() or 0) if pid_file.exists() else 0
    done = subprocess.run([sys.executable, "-m", "prefect", "server", "stop"], capture_output=True, text=True,
                          check=False)
    console.print(escape((done.stdout + done.stderr).strip()))
    state_file = prefect_home() / STATE_FILE
    if done.returncode != 0 or not state_file.exists():
        raise typer.Exit(done.returncode and 1)
    state = json.loads(state_file.read_text())
    if profile_api_url(name=state["profile"])[1] == state["api_url"]:  # unless someone has set another since
        profile_api_url(state["previous"], state["profile"], write=True)
        console.print(f"PREFECT_API_URL in Prefect profile {state['profile']!r}: "
                      f"{'restored' if state['previous'] else 'unset'}")
    state_file.unlink()
    deadline = time.monotonic() + 20  # until it lets go of its port
    while health_ok(state["api_url"], timeout=1.0) and time.monotonic() < deadline:
        time.sleep(0.3)
    if pid and health_ok(state["api_url"], timeout=1.0):  # SIGTERM not enough (a browser kept a connection open)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)  # it runs in a session of its own: its group is the server alone
    pid_file.unlink(missing_ok=True)


@server_app.command()
def status(workdir: Path | None = IGNORED_WORKDIR) -> None:
    """Whether the API that runs use (PREFECT_API_URL of the environment or the active profile) answers /health;
    exit code 0 only when it does."""
    api_url = server_api_url()
    if api_url is None:
        console.print("no Prefect server configured (PREFECT_API_URL is unset): runs use Prefect's ephemeral local API")
        raise typer.Exit(1)
    healthy = health_ok(api_url)
    console.print(f"{'healthy' if healthy else 'not answering /health'}: PREFECT_API_URL={redact(api_url, api_url)}")
    if not healthy:
        raise typer.Exit(1)
