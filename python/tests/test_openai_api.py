#!/usr/bin/env python3
"""OpenAI-API tests of `sparrow serve` with the official `openai` client.

Starts the real binary (build/sparrow, or $SPARROW_BINARY) on a free port with the tiny
text test model and checks completions, chat completions, streaming, logprobs, n, stop and
errors. Run directly (python3 python/tests/test_openai_api.py) or with pytest; ctest runs it
when python3 can import openai.
"""

import os
import socket
import subprocess
import sys
import time
import unittest

try:
    import openai
    import requests
except ImportError as e:  # ctest treats exit code 77 as "skipped"
    print(f"skipping: {e} (pip install -r python/requirements.txt)")
    sys.exit(77)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = os.environ.get("SPARROW_BINARY", os.path.join(ROOT, "build", "sparrow"))
MODEL = os.path.join(ROOT, "tests", "testdata", "models", "text_tiny")
API_KEY = "test-key"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OpenAIApiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.port = free_port()
        cls.base = f"http://127.0.0.1:{cls.port}"
        cls.proc = subprocess.Popen(
            [BINARY, "serve", "--model-path", MODEL, "--port", str(cls.port), "--api-key", API_KEY, "--device", "cpu",
             "--max-total-tokens", "16384", "--served-model-name", "austen-tiny", "--log-interval", "0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            if cls.proc.poll() is not None:
                raise RuntimeError("server exited: " + cls.proc.stderr.read())
            try:
                if requests.get(cls.base + "/health", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        else:
            raise RuntimeError("server did not start")
        cls.client = openai.OpenAI(base_url=cls.base + "/v1", api_key=API_KEY, max_retries=0)

    @classmethod
    def tearDownClass(cls):
        cls.proc.terminate()  # SIGTERM: graceful shutdown
        try:
            cls.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            cls.proc.kill()
        assert cls.proc.returncode == 0, cls.proc.returncode

    def test_models(self):
        models = self.client.models.list()
        self.assertEqual([m.id for m in models.data], ["austen-tiny"])

    def test_completion(self):
        r = self.client.completions.create(model="austen-tiny", prompt="It is a truth", max_tokens=6,
                                           temperature=0, extra_body={"ignore_eos": True})
        self.assertEqual(len(r.choices), 1)
        self.assertEqual(r.choices[0].finish_reason, "length")
        self.assertEqual(r.usage.completion_tokens, 6)
        self.assertEqual(r.usage.total_tokens, r.usage.prompt_tokens + 6)
        again = self.client.completions.create(model="austen-tiny", prompt="It is a truth", max_tokens=6,
                                               temperature=0, extra_body={"ignore_eos": True})
        self.assertEqual(again.choices[0].text, r.choices[0].text)

    def test_completion_stream_matches(self):
        kw = dict(model="austen-tiny", prompt="Emma Woodhouse, handsome", max_tokens=12, temperature=0,
                  extra_body={"ignore_eos": True})
        whole = self.client.completions.create(**kw).choices[0].text
        chunks = list(self.client.completions.create(stream=True, stream_options={"include_usage": True}, **kw))
        text = "".join(c.choices[0].text for c in chunks if c.choices)
        self.assertEqual(text, whole)
        self.assertEqual(chunks[-1].usage.completion_tokens, 12)

    def test_completion_n_seed_logprobs(self):
        r = self.client.completions.create(model="austen-tiny", prompt=["Anne", "Fanny"], max_tokens=4, n=2,
                                           seed=5, logprobs=2, extra_body={"ignore_eos": True})
        self.assertEqual(len(r.choices), 4)
        self.assertEqual(sorted(c.index for c in r.choices), [0, 1, 2, 3])
        for c in r.choices:
            self.assertEqual(len(c.logprobs.tokens), 4)
            self.assertEqual(len(c.logprobs.token_logprobs), 4)
            self.assertTrue(all(lp <= 0 for lp in c.logprobs.token_logprobs))
        r2 = self.client.completions.create(model="austen-tiny", prompt=["Anne", "Fanny"], max_tokens=4, n=2,
                                            seed=5, logprobs=2, extra_body={"ignore_eos": True})
        self.assertEqual([c.text for c in r.choices], [c.text for c in r2.choices])

    def test_stop(self):
        base = self.client.completions.create(model="austen-tiny", prompt="Mr. Knightley", max_tokens=16,
                                              temperature=0, extra_body={"ignore_eos": True}).choices[0].text
        stop = next((base[i:i + 2] for i in range(1, len(base) - 1) if "\ufffd" not in base[i:i + 2]), None)
        if stop is None:
            self.skipTest("no usable stop string in the random model's output")
        r = self.client.completions.create(model="austen-tiny", prompt="Mr. Knightley", max_tokens=16,
                                           temperature=0, stop=[stop], extra_body={"ignore_eos": True})
        self.assertEqual(r.choices[0].text, base[:base.index(stop)])
        self.assertEqual(r.choices[0].finish_reason, "stop")

    def test_chat(self):
        msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Who is Mr. Darcy?"}]
        r = self.client.chat.completions.create(model="austen-tiny", messages=msgs, max_tokens=8, temperature=0,
                                                logprobs=True, top_logprobs=2, n=2)
        self.assertEqual(len(r.choices), 2)
        for c in r.choices:
            self.assertEqual(c.message.role, "assistant")
            self.assertIsInstance(c.message.content, str)
            self.assertEqual(len(c.logprobs.content), r.usage.completion_tokens // 2)
            for e in c.logprobs.content:
                self.assertEqual(len(e.top_logprobs), 2)
        self.assertEqual(r.choices[0].message.content, r.choices[1].message.content)  # greedy

    def test_chat_stream(self):
        msgs = [{"role": "user", "content": "Tell me about Bath."}]
        kw = dict(model="austen-tiny", messages=msgs, max_tokens=10, temperature=0, extra_body={"ignore_eos": True})
        whole = self.client.chat.completions.create(**kw).choices[0].message.content
        chunks = list(self.client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kw))
        self.assertEqual(chunks[0].choices[0].delta.role, "assistant")
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        self.assertEqual(text, whole)
        finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        self.assertEqual(finishes, ["length"])
        self.assertEqual(chunks[-1].usage.completion_tokens, 10)

    def test_errors(self):
        with self.assertRaises(openai.BadRequestError) as e:
            self.client.completions.create(model="austen-tiny", prompt="x", max_tokens=-1)
        self.assertIn("max_tokens", str(e.exception))
        with self.assertRaises(openai.BadRequestError):
            self.client.chat.completions.create(model="austen-tiny", messages=[], max_tokens=2)
        with self.assertRaises(openai.BadRequestError):
            self.client.completions.create(model="austen-tiny", prompt="x", temperature=-2)
        with self.assertRaises(openai.BadRequestError):
            self.client.completions.create(model="austen-tiny", prompt="x", max_tokens=100000)
        bad = openai.OpenAI(base_url=self.base + "/v1", api_key="wrong", max_retries=0)
        with self.assertRaises(openai.AuthenticationError):
            bad.models.list()
        # Still serving.
        r = self.client.completions.create(model="austen-tiny", prompt="x", max_tokens=1)
        self.assertEqual(len(r.choices), 1)


if __name__ == "__main__":
    unittest.main(verbosity=2)
