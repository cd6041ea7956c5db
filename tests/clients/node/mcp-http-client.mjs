// An MCP client on the official SDK's Streamable HTTP transport that sends a bearer token, the
// way hosted MCP servers are called: connect (initialize), list tools, call one, close; ROUNDS
// times, ROUND_DELAY_MS apart. The token comes from MCP_TOKEN (never on the command line).
//
// usage: MCP_TOKEN=... node mcp-http-client.mjs URL
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const url = new URL(process.argv[2]);
const token = process.env.MCP_TOKEN;
const rounds = Number(process.env.ROUNDS || 1);
const delay = Number(process.env.ROUND_DELAY_MS || 300);

for (let i = 0; i < rounds; i++) {
  const client = new Client({ name: "endpoint-client", version: "1.0.0" });
  const transport = new StreamableHTTPClientTransport(url, {
    requestInit: { headers: { Authorization: `Bearer ${token}` } },
  });
  await client.connect(transport);
  const { tools } = await client.listTools();
  const result = await client.callTool({ name: "echo", arguments: { text: `round ${i}` } });
  if (tools.length !== 1 || result.content[0].text !== `round ${i}`) {
    throw new Error(`unexpected answer: ${JSON.stringify({ tools, result })}`);
  }
  await client.close();
  if (i + 1 < rounds) await new Promise((resolve) => setTimeout(resolve, delay));
}
console.log("ok");
