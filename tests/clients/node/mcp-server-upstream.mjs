// A real MCP server (official TypeScript SDK, stdio transport) with one tool that calls an
// upstream host: once from the server itself and once through a helper child process (curl),
// the way MCP servers shell out to CLIs. Its file name follows the mcp-server-* convention.
import net from "node:net";
import { execFileSync } from "node:child_process";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { z } from "zod";

const server = new McpServer({ name: "upstream-probe", version: "1.0.0" });

server.registerTool(
  "fetch_upstream",
  {
    description: "Connect to an upstream host directly and through curl",
    inputSchema: { host: z.string(), port: z.number() },
  },
  async ({ host, port }) => {
    await new Promise((resolve, reject) => {
      const socket = net.connect({ host, port }, () => {
        socket.end();
        resolve();
      });
      socket.on("error", reject);
    });
    const url = host.includes(":") ? `http://[${host}]:${port}/` : `http://${host}:${port}/`;
    const code = execFileSync("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", url]);
    return { content: [{ type: "text", text: `direct ok, curl ${code}` }] };
  },
);

await server.connect(new StdioServerTransport());
