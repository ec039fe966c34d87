// The suite runs against a real `switchyard dev` it starts: its own data directory, a free
// port, the admin key `dev` writes. SWITCHYARD_BIN names the binary (default: the
// workspace's debug build).
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, openSync, readFileSync } from "node:fs";
import { createServer as createHttpServer } from "node:http";
import { createServer as createNetServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createNetServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until `url` answers at all (any status), or fails with the process' log. */
async function waitUntilUp(url, child, log) {
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill();
      throw new Error(`${child.spawnargs[1]} did not start:\n${readFileSync(log, "utf8")}`);
    }
    try {
      await fetch(url);
      return;
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
}

/** Starts `switchyard sandbox` and `switchyard dev` pointed at it; `stop()` ends both. */
export async function startServer() {
  const binary = process.env.SWITCHYARD_BIN ?? join(ROOT, "target", "debug", "switchyard");
  if (!existsSync(binary)) throw new Error(`no switchyard binary at ${binary}: build it or set SWITCHYARD_BIN`);
  const data = mkdtempSync(join(tmpdir(), "switchyard-sdk-js-"));
  // The PIDKey and Sikka simulators (`switchyard sandbox`) on loopback, so the pidms and
  // sikka namespaces do real work.
  const sandboxPort = await freePort();
  const sandboxLog = join(data, "sandbox.log");
  const sandbox = spawn(
    binary,
    ["sandbox", "--listen", `127.0.0.1:${sandboxPort}`, "--pidkey-latency-ms", "5", "--writeback-delay-ms", "200"],
    { stdio: ["ignore", openSync(sandboxLog, "w"), openSync(sandboxLog, "a")] },
  );
  await waitUntilUp(`http://127.0.0.1:${sandboxPort}/`, sandbox, sandboxLog);
  const simulators = `http://127.0.0.1:${sandboxPort}`;
  const port = await freePort();
  const log = join(data, "dev.log");
  const child = spawn(binary, ["dev"], {
    env: {
      ...process.env,
      SWITCHYARD_PIDKEY_BASE_URL: simulators,
      PIDKEY_API_KEY: "sdk-test",
      SWITCHYARD_SIKKA_BASE_URL: `${simulators}/v4`,
      SIKKA_APP_ID: "sandbox-app-id",
      SIKKA_APP_KEY: "sandbox-app-key",
      SWITCHYARD_DATA_DIR: data,
      SWITCHYARD_LISTEN: `127.0.0.1:${port}`,
      SWITCHYARD_METRICS_LISTEN: `127.0.0.1:${await freePort()}`,
      SWITCHYARD_LOG_FORMAT: "json",
      SWITCHYARD_WEBHOOK_RETRY_SCHEDULE: "200ms,400ms",
      SWITCHYARD_WEBHOOK_ALLOW_CIDRS: "127.0.0.0/8",
      SWITCHYARD_RATE_LIMIT_PER_MINUTE: "100000",
    },
    stdio: ["ignore", openSync(log, "w"), openSync(log, "a")],
  });
  const baseUrl = `http://127.0.0.1:${port}`;
  await waitUntilUp(`${baseUrl}/healthz`, child, log);
  const adminKey = readFileSync(join(data, "admin.key"), "utf8").trim();
  return {
    baseUrl,
    port,
    adminKey,
    data,
    log,
    async stop() {
      await Promise.all([child, sandbox].map((p) => {
        const exited = new Promise((resolve) => p.once("exit", resolve));
        p.kill("SIGTERM");
        return exited;
      }));
    },
  };
}

/** A webhook receiver on loopback that records what arrives (raw body and headers). */
export async function startReceiver() {
  const received = [];
  const waiters = [];
  const server = createHttpServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      received.push({ body: Buffer.concat(chunks), headers: req.headers });
      res.writeHead(200).end();
      for (const w of waiters.splice(0)) w();
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}/hook`,
    received,
    /** The first `n` deliveries, once they have arrived. */
    async wait(n, withinMs = 20_000) {
      const deadline = Date.now() + withinMs;
      while (received.length < n) {
        if (Date.now() > deadline) throw new Error(`${received.length} of ${n} deliveries arrived`);
        await new Promise((resolve) => {
          waiters.push(resolve);
          setTimeout(resolve, 100);
        });
      }
      return received.slice(0, n);
    },
    close: () => new Promise((resolve) => {
      server.close(resolve);
      server.closeAllConnections();
    }),
  };
}

export const unique = (prefix) => `${prefix}${Math.random().toString(16).slice(2, 10)}`;
