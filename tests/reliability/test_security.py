"""Security defaults: no pickle or unsafe YAML on the way in, safetensors on the way out, servers that keep to
loopback or ask for credentials, outputs only under the work directory, secrets never written down."""

import ast
import os
import subprocess
import typing
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest
from pydantic import BaseModel

from flows.config import ConfigError, PipelineConfig, load_config, unwritable
from infra.launch import free_port
from tasks.data.ingest import InputPath
from tests.reliability.pipeline_runs import (
    DATA_STAGES,
    REPO,
    TOKENMILL,
    manifest,
    the_output,
)

SOURCE_FOLDERS = ["flows", "tasks", "model", "infra", "scripts"]
# every path a recipe names; all are read, none written, except the work directory every output goes under
INPUT_PATH_FIELDS = {"ingest.paths", "dedup.decontaminate.paths", "tokenizer.path", "finetune.data", "sft.data",
                     "evaluate.extra_texts", "evaluate.lm_eval.include_path", "pretrain.launch.hostfile", "finetune.launch.hostfile",
                     "sft.launch.hostfile"}
# besides `workdir` (a location string: a path or a storage URL), the only place a config writes to is the
# POSIX folder a training stage checkpoints in, when the recipe names one
OUTPUT_PATH_FIELDS = {"pretrain.launch.checkpoint_dir", "finetune.launch.checkpoint_dir", "sft.launch.checkpoint_dir"}
UNSAFE_MODULES = {"pickle", "cPickle", "dill", "joblib", "shelve", "marshal"}  # they run code while loading


def calls(tree: ast.AST) -> list[tuple[str, ast.Call]]:
    """(dotted name, call) of every call of a name or attribute chain: `torch.load(...)` -> "torch.load"."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            parts, func = [], node.func
            while isinstance(func, ast.Attribute):
                parts.append(func.attr)
                func = func.value
            if isinstance(func, ast.Name):
                found.append((".".join([func.id, *reversed(parts)]), node))
    return found


def keyword(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name and isinstance(kw.value, ast.Constant):
            return kw.value.value
    return None


@pytest.fixture(scope="module")
def sources() -> dict[Path, ast.AST]:
    files = [p for folder in SOURCE_FOLDERS for p in sorted((REPO / folder).rglob("*.py"))]
    assert len(files) > 30
    return {p.relative_to(REPO): ast.parse(p.read_text(), filename=str(p)) for p in files}


def test_no_pickle_and_no_unsafe_deserialisation_in_the_source(sources):
    problems = []
    for path, tree in sources.items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                if any(n and n.split(".")[0] in UNSAFE_MODULES for n in names):
                    problems.append(f"{path}:{node.lineno}: imports {names}")
        for name, call in calls(tree):
            where = f"{path}:{call.lineno}: {name}"
            if name.endswith("torch.load") and keyword(call, "weights_only") is not True:
                problems.append(f"{where} without weights_only=True")
            if name in ("torch.save", "pickle.dump", "pickle.dumps"):
                problems.append(f"{where}: pickle-based; weights go to safetensors")
            if name.split(".")[-1] in ("load", "load_all", "unsafe_load", "full_load") and name.startswith("yaml."):
                problems.append(f"{where}: YAML only via yaml.safe_load")
            if name in ("np.load", "numpy.load") and keyword(call, "allow_pickle") is True:
                problems.append(f"{where} with allow_pickle=True")
            if name in ("eval", "exec"):
                problems.append(where)
    assert problems == []


def test_weights_and_exports_are_safetensors(sources):
    save_calls = {str(path) for path, tree in sources.items() for name, _ in calls(tree) if name == "save_file"}
    # safetensors.torch.save_file, nowhere else: weights, the HF export, the universal copy beside a checkpoint
    assert save_calls == {"model/weights.py", "model/hf.py", "model/engine.py"}
    stage_files = "\n".join(p.read_text() for p in sorted((REPO / "tasks" / "train").glob("*.py")))
    assert stage_files.count('"weights": "model.safetensors"') == 2  # the training path (launch.py) and export
    assert ".pt\"" not in stage_files and ".bin\"" not in stage_files


# ---- servers -------------------------------------------------------------------------------------------------


def test_a_non_loopback_bind_without_auth_is_refused():
    """tests/test_server.py::test_non_loopback_bind_without_auth_is_refused runs `server start --host 0.0.0.0`;
    here the rule itself, for the forms an address takes."""
    import typer

    from flows.server import check_start_options

    env = {k: v for k, v in os.environ.items() if k != "PREFECT_SERVER_API_AUTH_STRING"}
    for host in ("0.0.0.0", "::", "192.168.1.7", "my-host.example.org"):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(os, "environ", env)
            with pytest.raises(typer.Exit) as exit_info:
                check_start_options(host, None)
        assert exit_info.value.exit_code == 2, host
    for host in ("127.0.0.1", "localhost", "::1"):
        check_start_options(host, None)


def test_a_server_started_with_auth_refuses_requests_without_it(prefect_server):
    request = urllib.request.Request(f"{prefect_server.api_url}/flows/filter", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with pytest.raises(urllib.error.HTTPError) as err:
        direct.open(request, timeout=10)
    assert err.value.code == 401


def test_a_database_password_never_reaches_the_console_or_server_files(tmp_path):
    password = "pg-" + os.urandom(8).hex()
    url = f"postgresql+asyncpg://tokenmill:{password}@127.0.0.1:{free_port()}/prefect"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_SERVER_API_AUTH")}
    done = subprocess.run([str(TOKENMILL), "server", "start", "--workdir", str(tmp_path), "--port", str(free_port()),
                           "--database-url", url, "--timeout", "60"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 1, done.stdout  # nothing listens on that port: the server cannot start
    assert password not in done.stdout + done.stderr
    leaked = [str(p) for p in tmp_path.rglob("*") if p.is_file() and password.encode() in p.read_bytes()]
    assert leaked == []


def test_ray_runs_without_a_dashboard_and_with_token_auth(ray_local):
    """Ray's own gRPC ports listen on every interface (Ray offers no loopback-only mode); token auth guards them."""
    import ray

    try:
        from ray._private.authentication.authentication_utils import (
            is_token_auth_enabled,
        )
    except ImportError:
        pytest.skip("this Ray has no token authentication")
    ours = {os.getpid()} | {p.pid for p in psutil.Process().children(recursive=True)}
    listening = [c for c in psutil.net_connections("inet") if c.status == psutil.CONN_LISTEN and c.pid in ours]
    assert listening, "no Ray process found"
    assert all(c.laddr.port != 8265 for c in listening)  # no dashboard
    assert ray.is_initialized() and is_token_auth_enabled()


# ---- outputs stay in the work directory ------------------------------------------------------------------------


def path_fields(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Dotted names of every field whose type holds a Path, through nested configs."""
    found = set()
    for name, field in model.model_fields.items():
        types_in = _leaf_types(field.annotation)
        if any(isinstance(t, type) and issubclass(t, BaseModel) for t in types_in):
            for t in types_in:
                if isinstance(t, type) and issubclass(t, BaseModel):
                    found |= path_fields(t, f"{prefix}{name}.")
        if any(isinstance(t, type) and issubclass(t, (Path, InputPath)) for t in types_in):
            found.add(prefix + name)
    return found


def _leaf_types(annotation) -> list:
    args = typing.get_args(annotation)
    if not args:
        return [annotation]
    return [leaf for arg in args for leaf in _leaf_types(arg)]


def test_the_work_directory_and_checkpoint_folders_are_the_only_paths_a_config_writes_to():
    assert path_fields(PipelineConfig) == INPUT_PATH_FIELDS | OUTPUT_PATH_FIELDS
    assert PipelineConfig.model_fields["workdir"].annotation is str


def test_every_output_of_a_run_lies_under_its_work_directory(baseline):
    workdir = baseline.workdir.resolve()
    for stage in DATA_STAGES:
        found = manifest(the_output(baseline.workdir, stage))
        folder = Path(found["path"]).resolve()
        assert folder.is_relative_to(workdir) and folder.parent.name == stage
        for relative in found["files"].values():
            assert (folder / relative).resolve().is_relative_to(folder)
    # and the run's own record (.tokenmill/runs: what gc keeps) beside them
    assert sorted(p.name for p in workdir.iterdir()) == sorted([*DATA_STAGES, "clean_signals", ".tokenmill"])


def test_an_unwritable_workdir_is_a_config_error(tmp_path):
    (tmp_path / "file").write_text("x")
    assert "is a file, not a folder" in unwritable(tmp_path / "file" / "deeper" / "work")
    assert unwritable(tmp_path / "new" / "work") is None
    with pytest.raises(ConfigError, match=r"workdir: cannot create .*file/work: .*file is a file"):
        load_config(REPO / "configs" / "tiny.yaml", [f"ingest.paths=[{REPO / 'data' / 'tiny'}]",
                                                       f"finetune.data={REPO / 'data' / 'sms_spam.parquet'}",
                                                       f"sft.data={REPO / 'data' / 'sms_instructions.jsonl'}"],
                    workdir=tmp_path / "file" / "work")


# ---- secrets ----------------------------------------------------------------------------------------------------


def test_secrets_in_the_environment_never_reach_outputs_logs_or_the_console(baseline, prefect_server):
    assert baseline.secrets and all(len(secret) >= 20 for secret in baseline.secrets.values())
    files = [p for root in (baseline.workdir, prefect_server.folder) for p in root.rglob("*") if p.is_file()]
    assert len(files) > 20
    leaks = [f"{name} in {where}" for name, secret in baseline.secrets.items()
             for where, data in [("the console", baseline.output.encode())] + [(str(p), p.read_bytes()) for p in files]
             if secret.encode() in data]
    assert leaks == []
