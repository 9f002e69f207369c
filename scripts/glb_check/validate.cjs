// Runs the Khronos glTF validator on one .glb and prints a JSON summary on stdout.
// Usage: node validate.cjs MODULES_DIR FILE.glb [MAX_MESSAGES]
// MODULES_DIR is the folder holding node_modules/gltf-validator (check_glb.py's cache).
"use strict";

const fs = require("fs");
const path = require("path");
const { createRequire } = require("module");

const [modulesDir, file, maxArg] = process.argv.slice(2);
const maxMessages = Number(maxArg || 10);
const requireFrom = createRequire(path.join(path.resolve(modulesDir), "package.json"));
const validator = requireFrom("gltf-validator");
const SEVERITY = ["error", "warning", "info", "hint"];

async function main() {
  const bytes = new Uint8Array(fs.readFileSync(file));
  const report = await validator.validateBytes(bytes, {
    uri: path.basename(file),
    format: "glb",
    maxIssues: 0, // count every issue; only the first few messages are kept below
    writeTimestamp: false,
    // A voxmesh .glb carries everything in its binary chunk; anything external is a problem.
    externalResourceFunction: (uri) => Promise.reject(new Error(`external resource ${uri}`)),
  });
  const issues = report.issues;
  const info = report.info || {};
  const summary = {
    validatorVersion: report.validatorVersion,
    numErrors: issues.numErrors,
    numWarnings: issues.numWarnings,
    numInfos: issues.numInfos,
    numHints: issues.numHints,
    messages: issues.messages.slice(0, maxMessages).map((m) => ({
      severity: SEVERITY[m.severity] || String(m.severity),
      code: m.code,
      message: m.message,
      pointer: m.pointer,
    })),
    info: {
      version: info.version,
      generator: info.generator,
      animationCount: info.animationCount,
      hasMorphTargets: info.hasMorphTargets,
      drawCallCount: info.drawCallCount,
      totalVertexCount: info.totalVertexCount,
      totalTriangleCount: info.totalTriangleCount,
      maxAttributes: info.maxAttributes,
    },
  };
  process.stdout.write(JSON.stringify(summary) + "\n");
}

main().catch((err) => {
  process.stderr.write(`validator failed: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
