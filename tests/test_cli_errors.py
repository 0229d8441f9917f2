"""What a user sees when something is wrong: the real CLI, each bad input, bad config and out-of-order command.

Every case asserts the exit code, one line naming the file/key/value (and what to do), and no
traceback. These fail in pre-flight, before any ZenML or MLflow set-up (a second or two each);
the runs that go through ZenML are in test_cli_runs.py (slow).
"""

from __future__ import annotations

import gzip
import http.server
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LOCAL = str(REPO / "configs" / "local.yaml")


def cli(*args: str, workdir: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("PTWIKI_", "MLFLOW_", "ZENML_"))}
    environ.update(PTWIKI_ASSET_PATH=os.environ.get("PTWIKI_ASSET_PATH", str(REPO.parent / "shared")),
                   PTWIKI_WORKDIR=str(workdir), HF_HUB_OFFLINE="1", COLUMNS="200")
    environ.update(env or {})
    return subprocess.run([sys.executable, "-m", "ptwiki_llm.cli", *args], cwd=REPO, env=environ,
                          capture_output=True, text=True, timeout=120)


def error_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The one error line of a refused command, printed last (after asserting the exit code and no traceback)."""
    output = result.stdout + result.stderr
    assert result.returncode == code, output
    assert "Traceback" not in output and "File \"" not in output, output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], output  # one line, and it is the last one
    return errors[0]


def nothing_set_up(workdir: Path) -> bool:
    """Pre-flight failures happen before ZenML and MLflow create their stores."""
    return not (workdir / "zenml").exists() and not (workdir / "mlflow").exists()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path / "wd"


# --- bad input -------------------------------------------------------------------------------------


def test_a_missing_data_source_is_named_and_never_replaced_by_a_download(workdir, tmp_path):
    missing = tmp_path / "does" / "not" / "exist.xml.bz2"
    # Hub allowed and not offline: the old resolver would have fetched wikimedia/wikipedia instead
    result = cli("data", "-c", LOCAL, "--set", f"data.source={missing}", "--set", "allow_hub_download=true",
                 workdir=workdir, env={"HF_HUB_OFFLINE": ""})
    line = error_line(result, 2)
    assert str(missing) in line and "nothing is downloaded" in line
    assert not (workdir / "assets" / "hub").exists() and nothing_set_up(workdir)


def test_random_bytes_are_refused_without_echoing_them(workdir, tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(bytes(range(256)) * 8)
    line = error_line(cli("data", "-c", LOCAL, "--set", f"data.source={junk}", workdir=workdir), 2)
    assert str(junk) in line and "binary bytes 00 01 02" in line and "Supported:" in line
    assert line.isprintable() and nothing_set_up(workdir)


def test_a_bz2_cut_before_its_first_block_ends_says_truncated(workdir, tmp_path, asset):
    dump = asset("data/ptwiki_dbpedia_minidump_berlim.xml.bz2")
    cut = tmp_path / "cut.xml.bz2"
    cut.write_bytes(dump.read_bytes()[:5000])
    line = error_line(cli("data", "-c", LOCAL, "--set", f"data.source={cut}", workdir=workdir), 2)
    assert str(cut) in line and "truncated or corrupt bz2" in line and "byte 0" not in line
    assert nothing_set_up(workdir)


def test_an_empty_input_file(workdir, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    line = error_line(cli("data", "-c", LOCAL, "--set", f"data.source={empty}", workdir=workdir), 2)
    assert str(empty) in line and "empty" in line


def test_json_records_of_an_unknown_schema(workdir, tmp_path):
    records = tmp_path / "other.jsonl.gz"
    records.write_bytes(gzip.compress(b'{"name": "x", "body": "y"}\n'))
    line = error_line(cli("data", "-c", LOCAL, "--set", f"data.source={records}", workdir=workdir), 2)
    assert str(records) in line and "['body', 'name']" in line


def test_a_missing_explicit_model_path_is_named(workdir, tmp_path):
    missing = tmp_path / "no-model"
    result = cli("data", "-c", LOCAL, "--set", f"models.base.path={missing}", "--set", "allow_hub_download=true",
                 workdir=workdir, env={"HF_HUB_OFFLINE": ""})
    line = error_line(result, 2)
    assert str(missing) in line and "nothing is downloaded" in line and nothing_set_up(workdir)


def test_an_unstaged_model_offline_says_where_to_put_it(workdir, tmp_path):
    result = cli("data", "-c", LOCAL, "--set", "models.base.path=models/not-staged", workdir=workdir)
    line = error_line(result, 2)
    assert "models/not-staged" in line and "PTWIKI_ASSET_PATH" in line


# --- bad config ------------------------------------------------------------------------------------


def test_a_yaml_syntax_error_names_the_file_and_line(workdir, tmp_path):
    preset = tmp_path / "broken.yaml"
    preset.write_text("workdir: ./x\ndata:\n  source: [unclosed\n")
    line = error_line(cli("data", "-c", str(preset), workdir=workdir), 2)
    assert str(preset) in line and "line 4" in line and "YAML syntax error" in line


def test_a_yaml_error_in_an_extended_preset_names_that_file(workdir, tmp_path):
    (tmp_path / "base.yaml").write_text("data: {source: [x\n")
    (tmp_path / "child.yaml").write_text("extends: base.yaml\nseed: 1\n")
    line = error_line(cli("info", "-c", str(tmp_path / "child.yaml"), workdir=workdir), 2)
    assert "base.yaml" in line


def test_a_bad_value_keeps_the_key_and_the_value(workdir):
    line = error_line(cli("data", "-c", LOCAL, "--set", "data.max_articles=abc", workdir=workdir), 2)
    assert "data.max_articles = 'abc'" in line and "valid integer" in line


def test_a_bad_value_from_the_environment(workdir):
    result = cli("info", "-c", LOCAL, workdir=workdir, env={"PTWIKI_TRAIN__MAX_STEPS": "-3"})
    line = error_line(result, 2)
    assert "train.max_steps = -3" in line and "PTWIKI_" in line


def test_an_unknown_key(workdir):
    line = error_line(cli("data", "-c", LOCAL, "--set", "data.max_artciles=5", workdir=workdir), 2)
    assert "unknown key data.max_artciles" in line


def test_a_missing_preset(workdir, tmp_path):
    line = error_line(cli("data", "-c", str(tmp_path / "nope.yaml"), workdir=workdir), 2)
    assert str(tmp_path / "nope.yaml") in line


@pytest.mark.parametrize("pair", ["data.max_articles", "evaluation.arms=[base, ft"])
def test_a_malformed_set(workdir, pair):
    line = error_line(cli("data", "-c", LOCAL, "--set", pair, workdir=workdir), 2)
    assert repr(pair) in line


# --- services down, wrong credentials ----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_mlflow_server_that_is_down(workdir):
    url = f"http://127.0.0.1:{_free_port()}"
    line = error_line(cli("data", "-c", LOCAL, "--set", f"mlflow.tracking_uri={url}", workdir=workdir), 2)
    assert url in line and "not reachable" in line and "mlflow.tracking_uri" in line


@pytest.fixture
def refusing_server():
    """A server on 127.0.0.1 that answers every request with 401, as an MLflow server with auth does."""

    class Refuse(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(401)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_wrong_mlflow_credentials(workdir, refusing_server):
    result = cli("data", "-c", LOCAL, "--set", f"mlflow.tracking_uri={refusing_server}", workdir=workdir,
                 env={"MLFLOW_TRACKING_USERNAME": "me", "MLFLOW_TRACKING_PASSWORD": "wrong"})
    line = error_line(result, 2)
    assert "refused the credentials" in line and "MLFLOW_TRACKING_PASSWORD" in line
    assert "wrong" not in line  # the password itself is never printed


def test_a_weaviate_server_that_is_down(workdir):
    url = f"http://127.0.0.1:{_free_port()}"
    result = cli("index", "-c", LOCAL, "--set", "rag.store.backend=weaviate", "--set", f"rag.store.weaviate.url={url}",
                 workdir=workdir)
    line = error_line(result, 2)
    assert url in line and "rag.store.weaviate.url" in line


# --- commands out of order, read-only commands -------------------------------------------------------


def test_ask_with_rag_before_index(workdir):
    line = error_line(cli("ask", "--rag", "Quem fundou Berlim?", "-c", LOCAL, workdir=workdir), 1)
    assert "ptwiki-llm index" in line and str(workdir / "rag") in line


def test_compare_before_any_run_suggests_a_setting_that_works(workdir):
    line = error_line(cli("compare", "Quem fundou Berlim?", "-c", LOCAL, workdir=workdir), 1)
    assert "ptwiki-llm run" in line and "--set 'evaluation.arms=[base, base+rag]'" in line  # brackets kept


def test_models_show_before_any_run_creates_nothing(workdir):
    line = error_line(cli("models", "show", "champion", "-c", LOCAL, workdir=workdir), 1)
    assert "ptwiki-llm run" in line
    assert not workdir.exists()


def test_read_only_commands_leave_an_empty_workdir_empty(workdir):
    for args in (["models", "list"], ["info"], ["info", "--json"]):
        result = cli(*args, "-c", LOCAL, workdir=workdir)
        assert result.returncode == 0, result.stdout + result.stderr
    assert not workdir.exists()


# --- the command line itself -------------------------------------------------------------------------


def test_version(workdir):
    from ptwiki_llm import __version__

    result = cli("--version", workdir=workdir)
    assert result.returncode == 0 and result.stdout.strip() == f"ptwiki-llm {__version__}"


def test_flags_show_no_value_placeholder(workdir):
    for args in (["--help"], ["data", "--help"], ["ask", "--help"]):
        result = cli(*args, workdir=workdir)
        assert result.returncode == 0 and "<bool>" not in result.stdout, result.stdout


@pytest.mark.parametrize("how", ["flag after the command", "environment"])
def test_debug_shows_the_traceback(workdir, tmp_path, how):
    missing = str(tmp_path / "missing.xml")
    args = ["data", "-c", LOCAL, "--set", f"data.source={missing}"]
    result = (cli(*args, "--debug", workdir=workdir) if how.startswith("flag")
              else cli(*args, workdir=workdir, env={"PTWIKI_DEBUG": "1"}))
    assert result.returncode != 0 and "Traceback" in result.stderr and "AssetNotFoundError" in result.stderr


def test_a_bug_keeps_its_traceback_and_a_user_error_does_not(tmp_path):
    script = tmp_path / "app.py"
    script.write_text(
        "import typer\n"
        "from ptwiki_llm.cli_entry import CliGroup\n"
        "from ptwiki_llm.errors import InputError\n"
        "app = typer.Typer(cls=CliGroup, pretty_exceptions_enable=False)\n"
        "@app.callback()\n"
        "def main() -> None: ...\n"
        "@app.command()\n"
        "def go(kind: str) -> None:\n"
        "    if kind == 'bug':\n"
        "        {}['missing']\n"
        "    try:\n"
        "        raise InputError('input /x is empty', 'Give another file')\n"
        "    except InputError as exc:\n"
        "        raise RuntimeError('wrapped by a library') from exc\n"
        "app()\n"
    )
    bug = subprocess.run([sys.executable, str(script), "go", "bug"], capture_output=True, text=True, cwd=REPO,
                         timeout=60)
    assert bug.returncode == 1 and "Traceback" in bug.stderr and "KeyError: 'missing'" in bug.stderr
    fixable = subprocess.run([sys.executable, str(script), "go", "user"], capture_output=True, text=True, cwd=REPO,
                             timeout=60)
    assert fixable.returncode == 2 and fixable.stderr == "error: input /x is empty. Give another file\n"
