// An MCP server on the official SDK's Streamable HTTP transport (stateless, JSON responses),
// served by node:http or node:https. Prints "listening" once it accepts connections.
//
// usage: node mcp-http-server.mjs HOST PORT [--tls CERT KEY] [--hsts VALUE]
import fs from "node:fs";
import http from "node:http";
import https from "node:https";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { z } from "zod";

const [host, port, ...rest] = process.argv.slice(2);
let tls = null;
let hsts = null;
for (let i = 0; i < rest.length; i++) {
  if (rest[i] === "--tls") {
    tls = { cert: fs.readFileSync(rest[i + 1]), key: fs.readFileSync(rest[i + 2]) };
    i += 2;
  } else if (rest[i] === "--hsts") {
    hsts = rest[++i];
  }
}

function mcpServer() {
  const server = new McpServer({ name: "endpoint-test", version: "1.0.0" });
  server.registerTool(
    "echo",
    { description: "Echo the text back", inputSchema: { text: z.string() } },
    async ({ text }) => ({ content: [{ type: "text", text }] }),
  );
  return server;
}

async function handle(req, res) {
  if (hsts) res.setHeader("Strict-Transport-Security", hsts);
  const server = mcpServer();
  const transport = new StreamableHTTPServerTransport({
    sessionIdGenerator: undefined,
    enableJsonResponse: true,
  });
  res.on("close", () => {
    transport.close();
    server.close();
  });
  await server.connect(transport);
  await transport.handleRequest(req, res);
}

const listener = tls ? https.createServer(tls, handle) : http.createServer(handle);
listener.listen(Number(port), host, () => console.log("listening"));
