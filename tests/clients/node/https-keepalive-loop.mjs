// Load generator for `cargo xtask bench`: N sequential HTTPS requests over one keep-alive
// connection, after a line on stdin (so the monitor can target this process first).
// Usage: node https-keepalive-loop.mjs HOST PORT SERVERNAME CA_FILE N
// Prints: <requests> <seconds>
import https from "node:https";
import fs from "node:fs";
import readline from "node:readline";

const [host, port, servername, caFile, count] = process.argv.slice(2);
const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca: fs.readFileSync(caFile), servername });
const get = () =>
  new Promise((resolve, reject) => {
    const req = https.get({ host, port: Number(port), path: "/", agent, servername }, (res) => {
      res.resume();
      res.on("end", resolve);
    });
    req.on("error", reject);
  });

await new Promise((resolve) => readline.createInterface({ input: process.stdin }).once("line", resolve));
await get(); // handshake outside the timed loop
const n = Number(count);
const start = process.hrtime.bigint();
for (let i = 0; i < n; i++) await get();
const seconds = Number(process.hrtime.bigint() - start) / 1e9;
console.log(`${n} ${seconds}`);
agent.destroy();
