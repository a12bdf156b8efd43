// UI benchmarks (not tests): run by scripts/bench-web.sh against a real node with a
// running echo guest 100 (serial0: socket) and a stopped guest 101. Prints:
//  - first useful paint after login (login click to the tree's first guest row) with the
//    node's real resources, and with 1 000 and 10 000 guests (the /cluster/resources
//    answer replaced by a synthetic one of that size: the rest is the real API);
//  - tree update latency: POST start of guest 101 to its tree icon turning "running";
//  - console latency: keypress to echo on the serial console of guest 100 (median of 30).
import { chromium } from "playwright-core";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const url = process.env.FERROX_URL;
const password = process.env.FERROX_PASSWORD;
const context = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "ferrox-bench-")), {
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic"],
  ignoreHTTPSErrors: true,
  viewport: { width: 1440, height: 900 },
});
const page = await context.newPage();
page.setDefaultTimeout(60_000);

async function login() {
  await page.goto(url);
  await page.evaluate(() => localStorage.clear());
  await page.context().clearCookies();
  await page.goto(url);
  await page.fill("input[name=password]", password);
  const t0 = Date.now();
  await page.click("button[type=submit]");
  await page.locator(".tree-row.icon-vm-running, .tree-row.icon-vm-stopped").first().waitFor();
  return Date.now() - t0;
}

function synthetic(n) {
  const rows = [{ id: "node/n1", type: "node", node: "n1", status: "online", maxcpu: 64, cpu: 0.2, mem: 1e10, maxmem: 2e11 }];
  for (let i = 0; i < n; i++) rows.push({ id: `qemu/${1000 + i}`, type: "qemu", node: "n1", vmid: 1000 + i, name: `guest${i}`, status: i % 3 ? "running" : "stopped", maxcpu: 2, maxmem: 2 ** 31 });
  return JSON.stringify({ data: rows });
}

const results = {};
results["first paint, real resources"] = `${await login()} ms`;
for (const n of [1000, 10000]) {
  const body = synthetic(n);
  await page.route("**/api2/json/cluster/resources*", (route) => route.fulfill({ status: 200, contentType: "application/json", body }));
  const ms = await login();
  // Scrolling the whole tree: frames that took longer than 50 ms.
  const slow = await page.evaluate(async () => {
    const tree = document.querySelector(".tree");
    let slowFrames = 0, last = performance.now();
    for (let y = 0; y < tree.scrollHeight; y += 2000) {
      tree.scrollTop = y;
      await new Promise((r) => requestAnimationFrame(r));
      const now = performance.now();
      if (now - last > 50) slowFrames++;
      last = now;
    }
    return { slowFrames, rows: document.querySelectorAll(".tree-row").length };
  });
  results[`first paint, ${n} guests`] = `${ms} ms (DOM rows: ${slow.rows}, frames > 50 ms while scrolling: ${slow.slowFrames})`;
  await page.unroute("**/api2/json/cluster/resources*");
}

await login();
const t0 = Date.now();
await page.evaluate(async () => {
  const s = JSON.parse(localStorage.getItem("ferrox-session"));
  await fetch("/api2/json/nodes/n1/qemu/101/status/start", { method: "POST", headers: { CSRFPreventionToken: s.csrf } });
});
await page.locator('.tree-row[data-key="node/n1/qemu/101"].icon-vm-running').waitFor();
results["tree update after a guest starts"] = `${Date.now() - t0} ms`;

await page.goto(`${url}#/node/n1/qemu/100/serial0`);
await page.locator("[data-testid=console-state]", { hasText: "connected" }).waitFor();
await page.locator("[data-testid=serial-terminal]").click();
const lat = [];
const echoed = () => document.querySelector("[data-testid=serial-terminal] .xterm-rows").textContent.replace(/\s/g, "").length;
for (let i = 0; i < 30; i++) {
  const before = await page.evaluate(echoed);
  const t = performance.now();
  await page.keyboard.type(String.fromCharCode(97 + (i % 26)));
  await page.waitForFunction(([f, n]) => new Function(`return (${f})()`)() > n, [echoed.toString(), before], { polling: "raf" });
  lat.push(performance.now() - t);
}
lat.sort((a, b) => a - b);
results["serial console keypress to echo"] = `median ${lat[15].toFixed(1)} ms, max ${lat[29].toFixed(1)} ms (30 keys)`;
console.log(JSON.stringify(results, null, 2));
await context.close();
