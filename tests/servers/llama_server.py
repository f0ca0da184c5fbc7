"""Run ``python -m llama_cpp.server`` on loopback with the bundled model, for tests and the bench.

As a script it measures the remote engine against that server:
``.venv/bin/python -m tests.servers.llama_server --runs 10``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

SERVER_MODULES = ("llama_cpp", "fastapi", "uvicorn", "sse_starlette", "starlette_context", "pydantic_settings")


def missing_server_modules() -> list[str]:
    return [m for m in SERVER_MODULES if importlib.util.find_spec(m) is None]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """One llama_cpp.server process; ``stop()`` kills exactly that process."""

    def __init__(
        self, model: Path, *, threads: int = 2, n_ctx: int = 2048, api_key: str | None = None, ready_s: float = 180
    ) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.api_key = api_key
        self.log = tempfile.NamedTemporaryFile(prefix="llama-server-", suffix=".log", delete=False)  # noqa: SIM115
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1"]
        cmd += ["--port", str(self.port), "--n_ctx", str(n_ctx), "--n_threads", str(threads)]
        cmd += ["--n_threads_batch", str(threads), "--verbose", "False"]
        if api_key:
            cmd += ["--api_key", api_key]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        try:
            self._wait_ready(ready_s)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, ready_s: float) -> None:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        deadline = time.monotonic() + ready_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with {self.proc.returncode}; see {self.log.name}")
            try:
                if httpx.get(f"{self.base_url}/models", headers=headers, timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"llama_cpp.server not ready after {ready_s:g} s; see {self.log.name}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()


PROMPTS = (
    "Hi! How are you today?",
    "What did you have for breakfast?",
    "Tell me something about the sea.",
    "What's your favourite season and why?",
    "Do you like music?",
    "Where would you go on holiday?",
    "What is a good book to read?",
    "How do you make tea?",
    "What do you do for fun?",
    "Can you recommend a hobby?",
)


def main() -> None:
    """Median TTFT, TPS and 20/TPS+TTFT of OpenAiCompatLlm against a loopback llama_cpp.server."""
    from app.config import DEFAULT_SYSTEM_PROMPT
    from app.core.engines import ChatMessage
    from app.engines.llm_openai import OpenAiCompatLlm
    from app.model_registry import resolve

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=96)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} (other processes skew the numbers)")
    server = LlamaServer(resolve("llm"), threads=args.threads)
    try:
        # Generous timeouts: on a shared 2-core machine other work can pause generation for seconds.
        timeouts = {"first_token_timeout_s": 60.0, "stall_timeout_s": 30.0}
        llm = OpenAiCompatLlm(server.base_url, "", None, max_tokens=args.max_tokens, **timeouts)
        rows = []
        for i in range(args.runs):
            prompt = PROMPTS[i % len(PROMPTS)]
            msgs = [ChatMessage("system", DEFAULT_SYSTEM_PROMPT), ChatMessage("user", prompt)]
            n = sum(1 for _ in llm.stream_chat(msgs))
            t = llm.last_timing
            rows.append((t.ttft_ms, t.tps, t.latency_ms))
            print(
                f"{i}: {n:3d} tokens  ttft {t.ttft_ms:7.1f} ms  tps {t.tps:6.1f} ({t.tps_source})  "
                f"20/tps+ttft {t.latency_ms:7.1f} ms  finish={llm.last_stats.finish_reason}"
            )
        ttft, tps, lat = (statistics.median(col) for col in zip(*rows, strict=True))
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        print(f"median over {args.runs}: ttft {ttft:.1f} ms, tps {tps:.1f}, 20/tps+ttft {lat:.1f} ms")
        llm.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
