"""Query a running lightllm server with the official openai client.

    python -m lightllm.server --port 8000 &            # the built-in demo model
    python examples/server_client.py --base-url http://127.0.0.1:8000/v1
"""
import argparse

from openai import OpenAI


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    args = ap.parse_args()
    client = OpenAI(base_url=args.base_url, api_key="none")
    model = client.models.list().data[0].id
    done = client.completions.create(model=model, prompt="Hello, my name is", max_tokens=16, temperature=0.7, seed=1)
    print("completion:", repr(done.choices[0].text), done.usage)
    print("stream:", end=" ", flush=True)
    for chunk in client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi!"}],
                                                max_tokens=16, stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            print(repr(chunk.choices[0].delta.content), end=" ", flush=True)
    print()


if __name__ == "__main__":
    main()
