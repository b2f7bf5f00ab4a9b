"""LangChain, LlamaIndex and AutoGen (ag2) code as users write it for Ollama, with our base URL.

Run with tests/clients/.venv's Python: ``python python_clients.py BASE_URL QUESTION``; prints one
JSON object with each client's answer text.
"""

import json
import sys

base, question = sys.argv[1], sys.argv[2]
out = {}

from langchain_openai import ChatOpenAI  # noqa: E402

chat = ChatOpenAI(model="rag", base_url=base, api_key="unused", seed=5)
out["langchain_invoke"] = chat.invoke(question).content
out["langchain_stream"] = "".join(str(c.content) for c in chat.stream(question))

from llama_index.core.llms import ChatMessage  # noqa: E402
from llama_index.llms.openai_like import OpenAILike  # noqa: E402

llm = OpenAILike(model="rag", api_base=base, api_key="unused", is_chat_model=True, context_window=4096)
out["llamaindex_complete"] = llm.complete(question).text
out["llamaindex_chat"] = llm.chat([ChatMessage(role="user", content=question)]).message.content

from autogen import AssistantAgent  # noqa: E402

agent = AssistantAgent(
    "assistant",
    llm_config={"config_list": [{"model": "rag", "base_url": base, "api_key": "unused"}], "cache_seed": None},
)
reply = agent.generate_reply(messages=[{"role": "user", "content": question}])
out["autogen"] = reply if isinstance(reply, str) else (reply or {}).get("content")

print(json.dumps(out))
