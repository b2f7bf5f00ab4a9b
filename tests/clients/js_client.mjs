// The usual openai JavaScript SDK code, with our base URL: chat, then streaming chat.
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.env.BASE_URL, apiKey: "unused" });
const ask = { model: "rag", messages: [{ role: "user", content: process.env.QUESTION }], seed: 3 };
const whole = await client.chat.completions.create(ask);
let streamed = "";
let citations = null;
const stream = await client.chat.completions.create({ ...ask, stream: true });
for await (const chunk of stream) {
  streamed += chunk.choices[0]?.delta?.content ?? "";
  if (chunk.citations) citations = chunk.citations;
}
console.log(JSON.stringify({
  chat: whole.choices[0].message.content,
  chat_citations: whole.choices[0].message.citations,
  stream: streamed,
  stream_citations: citations,
}));
