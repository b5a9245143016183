"""The official OpenAI and Anthropic Python SDKs against the simulator.

Proof that the simulator speaks the real protocols: each SDK completes a plain and a
streamed request, raises its own RateLimitError on a 429, and raises its stream error on
an error event after a 200. Driven by tests/simulator.rs (`official_python_sdks...`),
which starts the three simulators and passes their root URLs:

    python tests/sdk_clients.py OK_ROOT LIMITED_ROOT MIDSTREAM_ROOT

OK_ROOT serves normally, LIMITED_ROOT answers every request with a 429
(max_concurrency 0), MIDSTREAM_ROOT sends an overloaded error after two content events.
Each root is like http://127.0.0.1:PORT; the OpenAI base URL is ROOT/v1.
Exit status 0 when every check passes; one line per check on stdout.
"""

import sys

import anthropic
import openai

MESSAGES = [{"role": "user", "content": "Write a detailed 500-word essay about the history of computing"}]
OPENAI_MODEL = "sim-gpt"
ANTHROPIC_MODEL = "claude-sim"


def check(name, cond, detail=""):
    if not cond:
        print(f"FAIL {name} {detail}")
        sys.exit(1)
    print(f"ok   {name}")


def openai_client(root):
    return openai.OpenAI(base_url=root + "/v1", api_key="sk-sim", max_retries=0, timeout=10)


def anthropic_client(root):
    return anthropic.Anthropic(base_url=root, api_key="sk-ant-sim", max_retries=0, timeout=10)


def main(ok_root, limited_root, midstream_root):
    oa = openai_client(ok_root)
    resp = oa.chat.completions.create(model=OPENAI_MODEL, messages=MESSAGES, max_completion_tokens=16)
    check("openai plain: content", resp.choices[0].message.content.startswith("The history of computing"),
          repr(resp.choices[0].message.content))
    check("openai plain: usage", (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (16, 16),
          repr(resp.usage))
    check("openai plain: finish_reason", resp.choices[0].finish_reason == "length", resp.choices[0].finish_reason)

    stream = oa.chat.completions.create(model=OPENAI_MODEL, messages=MESSAGES, max_completion_tokens=16,
                                        stream=True, stream_options={"include_usage": True})
    text, usage = "", None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if chunk.usage is not None:
            usage = chunk.usage
    check("openai stream: content", text == resp.choices[0].message.content, repr(text))
    check("openai stream: usage chunk", usage is not None and usage.completion_tokens == 16, repr(usage))

    an = anthropic_client(ok_root)
    msg = an.messages.create(model=ANTHROPIC_MODEL, max_tokens=16, messages=MESSAGES)
    check("anthropic plain: content", msg.content[0].text.startswith("The history of computing"), repr(msg.content))
    check("anthropic plain: usage", (msg.usage.input_tokens, msg.usage.output_tokens) == (16, 16), repr(msg.usage))
    check("anthropic plain: stop_reason", msg.stop_reason == "max_tokens", msg.stop_reason)

    with an.messages.stream(model=ANTHROPIC_MODEL, max_tokens=16, messages=MESSAGES) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    check("anthropic stream: content", text == msg.content[0].text, repr(text))
    check("anthropic stream: usage", (final.usage.input_tokens, final.usage.output_tokens) == (16, 16),
          repr(final.usage))

    try:
        openai_client(limited_root).chat.completions.create(model=OPENAI_MODEL, messages=MESSAGES)
        check("openai 429: RateLimitError", False, "no exception")
    except openai.RateLimitError as e:
        check("openai 429: RateLimitError", e.status_code == 429 and e.code == "rate_limit_exceeded",
              f"{e.status_code} {e.code}")
        check("openai 429: retry-after", e.response.headers.get("retry-after") == "1",
              repr(e.response.headers.get("retry-after")))

    try:
        anthropic_client(limited_root).messages.create(model=ANTHROPIC_MODEL, max_tokens=16, messages=MESSAGES)
        check("anthropic 429: RateLimitError", False, "no exception")
    except anthropic.RateLimitError as e:
        check("anthropic 429: RateLimitError",
              e.status_code == 429 and e.body["error"]["type"] == "rate_limit_error", repr(e.body))
        check("anthropic 429: request id", e.request_id == e.response.headers.get("request-id"), repr(e.request_id))

    try:
        for _ in openai_client(midstream_root).chat.completions.create(
                model=OPENAI_MODEL, messages=MESSAGES, stream=True):
            pass
        check("openai mid-stream error: APIError", False, "stream ended cleanly")
    except openai.APIError as e:
        check("openai mid-stream error: APIError", "overloaded" in e.message, repr(e.message))

    try:
        with anthropic_client(midstream_root).messages.stream(
                model=ANTHROPIC_MODEL, max_tokens=100, messages=MESSAGES) as s:
            for _ in s.text_stream:
                pass
        check("anthropic mid-stream error: APIStatusError", False, "stream ended cleanly")
    except anthropic.APIStatusError as e:
        check("anthropic mid-stream error: APIStatusError", e.body["error"]["type"] == "overloaded_error", repr(e.body))

    print("all SDK checks passed")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        print(__doc__)
        sys.exit(2)
    main(*sys.argv[1:])
