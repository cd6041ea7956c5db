// An MCP client (official TypeScript SDK) that starts an MCP server over stdio, as desktop
// clients do, calls one tool, and prints the server's pid and the result as JSON.
// Usage: node run-tool.mjs SERVER_SCRIPT TOOL ARGS_JSON
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";

const [serverScript, tool, argsJson] = process.argv.slice(2);
const transport = new StdioClientTransport({ command: process.execPath, args: [serverScript] });
const client = new Client({ name: "egress-monitor-e2e", version: "1.0.0" });
await client.connect(transport);
const serverPid = transport.pid;
const result = await client.callTool({ name: tool, arguments: JSON.parse(argsJson) });
console.log(JSON.stringify({ serverPid, result }));
await client.close();
