// The package as a user gets it: `npm install ./sdks/typescript` (offline: it has no
// dependencies) into a fresh project, then both module systems load the same API.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const sdk = join(dirname(fileURLToPath(import.meta.url)), "..");

test("installs with npm and loads as ESM and CommonJS", () => {
  const app = mkdtempSync(join(tmpdir(), "switchyard-npm-"));
  writeFileSync(join(app, "package.json"), JSON.stringify({ name: "app", version: "1.0.0", private: true }));
  execFileSync("npm", ["install", "--offline", "--no-audit", "--no-fund", "--loglevel=error", sdk], {
    cwd: app,
    stdio: "pipe",
  });
  const probe = (code, type) =>
    JSON.parse(execFileSync(process.execPath, ["--input-type", type, "-e", code], { cwd: app }).toString());
  const esm = probe(
    'import * as s from "switchyard"; console.log(JSON.stringify([Object.keys(s).sort(), typeof new s.Switchyard({apiKey: "k"}).webhooks.create]))',
    "module",
  );
  const cjs = probe(
    'const s = require("switchyard"); console.log(JSON.stringify([Object.keys(s).sort(), typeof new s.Switchyard({apiKey: "k"}).webhooks.create, new s.NotFoundError("x") instanceof s.SwitchyardError]))',
    "commonjs",
  );
  assert.deepEqual(esm[0], cjs[0], "both module systems export the same names");
  assert.ok(esm[0].includes("verifyWebhook") && esm[0].includes("RateLimitError"));
  assert.equal(esm[1], "function");
  assert.deepEqual(cjs.slice(1), ["function", true]);
});
