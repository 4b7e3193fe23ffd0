"""The OpenAI-compatible backend against a small deterministic fake server on 127.0.0.1 (loopback only)."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from harness.backends.openai import OpenAIGenerator
from harness.core.types import BenchError, ChatPrompt, Generator, GenParams


def _tokens(text: str) -> list[str]:
    return re.findall(r"\s*\S+|\s+$", text)


def _logprob(token: str) -> float:
    return -len(token.strip()) / 10


class FakeServer:
    """Deterministic OpenAI-style answers; records every request; can fail, refuse or delay."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.fail_next = 0  # answer this many next requests with HTTP 500
        self.refuse_echo = False  # answer echo requests with HTTP 400
        self.inflight = 0
        self.max_inflight = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append(
                        {"path": self.path, "body": body, "auth": self.headers.get("Authorization")}
                    )
                    failing = server.fail_next > 0
                    server.fail_next -= failing
                    server.inflight += 1
                    server.max_inflight = max(server.max_inflight, server.inflight)
                try:
                    if failing:
                        return self._send(500, {"error": {"message": "boom"}}, {"retry-after-ms": "10"})
                    text = json.dumps(body)
                    m = re.search(r"delay=([\d.]+)", text)
                    if m:
                        time.sleep(float(m.group(1)))
                    if self.path == "/v1/chat/completions":
                        return self._send(200, server.chat(body))
                    if self.path == "/v1/completions":
                        if body.get("echo") and server.refuse_echo:
                            return self._send(400, {"error": {"message": "echo is not supported"}})
                        return self._send(200, server.completion(body))
                    return self._send(404, {"error": {"message": "no such route"}})
                finally:
                    with server.lock:
                        server.inflight -= 1

            def _send(self, status, payload, headers=None):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)

    @staticmethod
    def _finish(body: dict) -> str:
        return "length" if body.get("max_tokens", 16) <= 4 else "stop"

    def chat(self, body: dict) -> dict:
        msgs = body["messages"]
        user = msgs[0]["content"]
        prefix = msgs[-1]["content"] if msgs[-1]["role"] == "assistant" else ""
        choices = [
            {
                "index": i,
                "message": {"role": "assistant", "content": f"chat[{user}|{prefix}]#{i}"},
                "finish_reason": self._finish(body),
            }
            for i in range(body.get("n", 1))
        ]
        choices.reverse()  # the client must order samples by index, not by position
        words = len((user + " " + prefix).split())
        usage = {"prompt_tokens": words + 7, "completion_tokens": 3, "total_tokens": words + 10}
        return {"id": "c", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": choices, "usage": usage}

    def completion(self, body: dict) -> dict:
        prompt = body["prompt"]
        usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": 0, "total_tokens": 0}
        if body.get("echo"):
            toks = _tokens(prompt)
            offsets = [sum(len(t) for t in toks[:i]) for i in range(len(toks))]
            lps = [None] + [_logprob(t) for t in toks[1:]]
            logprobs = {"tokens": toks, "token_logprobs": lps, "text_offset": offsets,
                        "top_logprobs": [None] + [{t: lp} for t, lp in zip(toks[1:], lps[1:])]}
            choices = [{"index": 0, "text": prompt, "logprobs": logprobs, "finish_reason": "length"}]
        else:
            choices = [{"index": i, "text": f"comp[{prompt}]#{i}", "logprobs": None,
                        "finish_reason": self._finish(body)} for i in range(body.get("n", 1))]
        return {"id": "t", "object": "text_completion", "created": 0, "model": body["model"],
                "choices": choices, "usage": usage}


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


@pytest.fixture
def server():
    s = FakeServer()
    s.thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def gen(server, **kw) -> OpenAIGenerator:
    kw.setdefault("max_retries", 0)
    kw.setdefault("timeout", 10)
    return OpenAIGenerator("tiny-model", server.base_url, **kw)


def test_identity_render_and_protocol(server):
    g = gen(server)
    assert isinstance(g, Generator)
    assert g.identity == f"openai:{server.base_url}:tiny-model"
    assert g.render("raw text") == "raw text"
    assert json.loads(g.render(ChatPrompt("q", "A:"))) == [
        {"role": "user", "content": "q"}, {"role": "assistant", "content": "A:"}]
    assert g.render(ChatPrompt("q")) != g.render(ChatPrompt("q", " "))
    assert gen(server, mode="completions").render(ChatPrompt("q", "A:")) == "Question: q\nAnswer: A:"
    with pytest.raises(BenchError, match="mode"):
        OpenAIGenerator("m", server.base_url, mode="edit")


def test_chat_request_shape_and_params(server):
    g = gen(server)
    params = GenParams(temperature=0.5, top_p=0.9, max_tokens=7, stop=("\n", "END"), seed=3, n=2)
    out = g.generate([ChatPrompt("hi"), ChatPrompt("2+2?", "The answer is")], params)
    reqs = sorted(server.requests, key=lambda r: r["body"]["messages"][0]["content"])
    assert [r["path"] for r in reqs] == ["/v1/chat/completions"] * 2
    plain, prefixed = reqs[1]["body"], reqs[0]["body"]
    assert plain["messages"] == [{"role": "user", "content": "hi"}]
    assert "continue_final_message" not in plain and "add_generation_prompt" not in plain
    assert prefixed["messages"] == [
        {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "The answer is"}]
    assert prefixed["continue_final_message"] is True and prefixed["add_generation_prompt"] is False
    for body in (plain, prefixed):
        assert body["model"] == "tiny-model"
        assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.5, 0.9, 7)
        assert (body["stop"], body["seed"], body["n"]) == (["\n", "END"], 3, 2)
    assert reqs[0]["auth"] == "Bearer EMPTY"
    # only the continuation, samples ordered by index, server usage as prompt_tokens, no token ids
    assert [s.text for s in out[1].samples] == ["chat[2+2?|The answer is]#0", "chat[2+2?|The answer is]#1"]
    assert out[0].text == "chat[hi|]#0"
    assert out[1].prompt == g.render(ChatPrompt("2+2?", "The answer is"))
    assert out[1].prompt_tokens == len("2+2? The answer is".split()) + 7
    assert all(s.token_ids == () and s.finish_reason == "stop" for s in out[1].samples)


def test_greedy_defaults_and_length(server, monkeypatch):
    monkeypatch.setenv("MY_KEY", "sekrit")
    g = gen(server, api_key_env="MY_KEY")
    out = g.generate([ChatPrompt("q")], GenParams(max_tokens=4))
    body = server.requests[0]["body"]
    sent = (body["temperature"], body["top_p"], body["seed"], body["n"], body["max_tokens"])
    assert sent == (0.0, 1.0, 0, 1, 4)
    assert "stop" not in body
    assert server.requests[0]["auth"] == "Bearer sekrit"
    assert out[0].samples[0].finish_reason == "length"


def test_completions_mode_and_str_prompts(server):
    g = gen(server, mode="completions")
    out = g.generate([ChatPrompt("q", "A:"), "raw"], GenParams(max_tokens=9, stop=("x",)))
    assert [r["path"] for r in server.requests] == ["/v1/completions"] * 2
    prompts = sorted(r["body"]["prompt"] for r in server.requests)
    assert prompts == ["Question: q\nAnswer: A:", "raw"]
    assert all(r["body"]["stop"] == ["x"] and r["body"]["max_tokens"] == 9 for r in server.requests)
    assert [g.text for g in out] == ["comp[Question: q\nAnswer: A:]#0", "comp[raw]#0"]
    assert out[0].prompt_tokens == 4
    # a str prompt goes to /completions in chat mode too (sent as is)
    chat = gen(server)
    assert chat.generate(["as is"], GenParams())[0].text == "comp[as is]#0"
    assert server.requests[-1]["path"] == "/v1/completions"


def test_order_preserved_under_concurrency(server):
    g = gen(server, max_concurrency=6)
    prompts = [ChatPrompt(f"p{i} delay={0.05 * (6 - i):.2f}") for i in range(6)]  # later ones answer first
    out = g.generate(prompts, GenParams())
    assert [o.text.split()[0] for o in out] == [f"chat[p{i}" for i in range(6)]
    assert server.max_inflight > 1  # concurrency shown by the server's own count, not by a wall-clock bound


def test_concurrency_is_bounded(server):
    g = gen(server, max_concurrency=2)
    g.generate([ChatPrompt(f"p{i} delay=0.1") for i in range(6)], GenParams())
    assert server.max_inflight == 2


def test_retries_on_500_then_success(server):
    server.fail_next = 1
    out = gen(server, max_retries=2).generate([ChatPrompt("q")], GenParams())
    assert out[0].text == "chat[q|]#0"
    assert len(server.requests) == 2


def test_500_without_retries_is_a_bench_error(server):
    server.fail_next = 1
    with pytest.raises(BenchError, match="HTTP 500") as e:
        gen(server, max_retries=0).generate([ChatPrompt("q")], GenParams())
    assert "\n" not in str(e.value)


def test_nothing_listening_gives_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}/v1"
    g = OpenAIGenerator("m", base, max_retries=1, timeout=2)
    with pytest.raises(BenchError) as e:
        g.generate([ChatPrompt("q")], GenParams())
    msg = str(e.value)
    assert base in msg and "is the server running? check --base-url" in msg and "\n" not in msg


def test_loglikelihood(server):
    g = gen(server, mode="completions")
    ctx = g.render(ChatPrompt("q", "The answer is"))
    out = g.loglikelihood([(ChatPrompt("q", "The answer is"), " (C)"), ("a b", " ccc dd"), ("a b ", "ccc"),
                           ("a", "")])
    assert out == pytest.approx([-0.3, -0.5, -0.3, 0.0])
    bodies = [r["body"] for r in server.requests]
    assert len(bodies) == 3  # an empty continuation needs no request
    assert all(b["echo"] is True and b["logprobs"] == 1 and b["max_tokens"] == 0 for b in bodies)
    assert sorted(b["prompt"] for b in bodies) == sorted([ctx + " (C)", "a b ccc dd", "a b ccc"])


def test_loglikelihood_refused_or_impossible(server):
    server.refuse_echo = True
    with pytest.raises(NotImplementedError, match="cannot score"):
        gen(server, mode="completions").loglikelihood([("a b", " c")])
    with pytest.raises(NotImplementedError, match="chat mode"):
        gen(server).loglikelihood([(ChatPrompt("q"), " c")])
    server.refuse_echo = False
    # str prompts can be scored in chat mode too
    assert gen(server).loglikelihood([("a b", " cc")]) == pytest.approx([-0.2])
