"""Talks to a running `magma serve` with the official `openai` Python package, unchanged.

Usage: python3 openai_client.py BASE_URL IMAGE_PNG
Prints one JSON object: the non-streamed text, the streamed text and the listed model ids.
"""

import base64
import json
import sys

from openai import OpenAI

base_url, image_path = sys.argv[1], sys.argv[2]
client = OpenAI(base_url=base_url, api_key="test-key")
with open(image_path, "rb") as f:
    data_url = "data:image/png;base64," + base64.b64encode(f.read()).decode()
messages = [
    {
        "role": "user",
        "content": [
            {"type": "image_url", "image_url": {"url": data_url}},
            {"type": "text", "text": "What is in this image?"},
        ],
    }
]
reply = client.chat.completions.create(
    model="magma-tiny-crop", messages=messages, max_tokens=12, temperature=0
)
stream = client.chat.completions.create(
    model="magma-tiny-crop", messages=messages, max_tokens=12, temperature=0, stream=True
)
streamed = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
print(
    json.dumps(
        {
            "text": reply.choices[0].message.content,
            "finish_reason": reply.choices[0].finish_reason,
            "completion_tokens": reply.usage.completion_tokens,
            "streamed": streamed,
            "models": [m.id for m in client.models.list()],
        }
    )
)
