// Loads one .glb with three.js's GLTFLoader in headless Chromium and prints a JSON
// summary on stdout (meshes, vertices, morph targets, animations, channels, duration).
// Usage: node load.cjs MODULES_DIR FILE.glb CHROMIUM [TIMEOUT_S]
// MODULES_DIR holds node_modules/{three,puppeteer-core} (check_glb.py's cache). The page
// and its files are served on 127.0.0.1 only; nothing is fetched from anywhere else.
"use strict";

const fs = require("fs");
const http = require("http");
const path = require("path");
const { createRequire } = require("module");

const [modulesDir, file, chromium, timeoutArg] = process.argv.slice(2);
const timeoutMs = 1000 * Number(timeoutArg || 60);
const requireFrom = createRequire(path.join(path.resolve(modulesDir), "package.json"));
const puppeteer = requireFrom("puppeteer-core");
const threeDir = path.join(path.resolve(modulesDir), "node_modules", "three");
const TYPES = { ".html": "text/html", ".js": "text/javascript", ".glb": "model/gltf-binary" };

function serve(request, response) {
  const url = decodeURIComponent(new URL(request.url, "http://127.0.0.1").pathname);
  let target = null;
  if (url === "/") target = path.join(__dirname, "page.html");
  else if (url === "/model.glb") target = path.resolve(file);
  else if (url.startsWith("/three/")) {
    const candidate = path.resolve(threeDir, "." + url.slice("/three".length));
    if (candidate.startsWith(threeDir + path.sep)) target = candidate;
  }
  if (!target || !fs.existsSync(target) || !fs.statSync(target).isFile()) {
    response.writeHead(404).end();
    return;
  }
  response.writeHead(200, { "Content-Type": TYPES[path.extname(target)] || "application/octet-stream" });
  fs.createReadStream(target).pipe(response);
}

async function main() {
  const server = http.createServer(serve);
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  const browser = await puppeteer.launch({
    executablePath: chromium,
    headless: true,
    args: [
      "--no-sandbox", // containers run as root without user namespaces; the page is our own
      "--disable-dev-shm-usage",
      "--use-angle=swiftshader",
      "--enable-unsafe-swiftshader",
      "--disable-background-networking",
      "--disable-component-update",
    ],
  });
  const log = [];
  try {
    const page = await browser.newPage();
    page.on("console", (m) => { if (m.type() === "error" || m.type() === "warn") log.push(`${m.type()}: ${m.text()}`); });
    page.on("pageerror", (err) => log.push(`pageerror: ${err.message}`));
    page.on("requestfailed", (r) => log.push(`requestfailed: ${r.url()} ${r.failure() && r.failure().errorText}`));
    page.on("response", (r) => { if (r.status() >= 400) log.push(`http ${r.status()}: ${r.url()}`); });
    await page.goto(`http://127.0.0.1:${port}/`, { waitUntil: "load", timeout: timeoutMs });
    let outcome;
    try {
      await page.waitForFunction("window.__glbCheck !== undefined", { timeout: timeoutMs, polling: 100 });
      outcome = await page.evaluate(() => window.__glbCheck);
    } catch (err) {
      outcome = { ok: false, error: `the page gave no result in ${timeoutMs / 1000} s (${err.message})` };
    }
    outcome.browser = await browser.version();
    outcome.console = log.slice(0, 20);
    process.stdout.write(JSON.stringify(outcome) + "\n");
  } finally {
    await browser.close();
    server.close();
  }
}

main().catch((err) => {
  process.stderr.write(`three.js load failed: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
