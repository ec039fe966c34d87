// The type declarations compile for a TypeScript user, imported (ESM) and required (CJS),
// under --strict. Needs the devDependency typescript (`npm install` here, which .ci/run
// does); without it the test says so, and fails under CI=true.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const sdk = join(dirname(fileURLToPath(import.meta.url)), "..");
const tsc = join(sdk, "node_modules", "typescript", "bin", "tsc");

test("the declarations compile under --strict as ESM and CommonJS", (t) => {
  if (!existsSync(tsc)) {
    const why = "typescript is not installed in sdks/typescript (run `npm install` there)";
    if (process.env.CI === "true") assert.fail(why);
    console.error(`\n!!! SKIPPED: ${why}\n`);
    t.skip(why);
    return;
  }
  execFileSync(process.execPath, [tsc, "-p", join(sdk, "test", "types")], { stdio: "inherit" });
});
