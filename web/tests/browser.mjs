// Browser tests of the web UI against a real cluster, in Debian's Chromium driven by
// playwright-core. Started by e2e/tests/web.rs, which sets up a 3-node cluster with a
// running echo guest (serial shell) on each node and an imbalance on n1, and passes:
//   FERROX_URL        https://127.0.0.1:PORT/ of n1
//   FERROX_PASSWORD   root@pam's password
//   FERROX_GUESTS     JSON {"n1": 100, "n2": 101, "n3": 102}
//   FERROX_SHOTS      where to save screenshots
// Exits non-zero on the first failed check, naming it.
import { chromium } from "playwright-core";
import { createHash, createHmac } from "node:crypto";
import assert from "node:assert/strict";
import { mkdtempSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const url = process.env.FERROX_URL;
const password = process.env.FERROX_PASSWORD;
const guests = JSON.parse(process.env.FERROX_GUESTS ?? "{}");
const shots = process.env.FERROX_SHOTS ?? mkdtempSync(join(tmpdir(), "ferrox-shots-"));
mkdirSync(shots, { recursive: true });
assert.ok(url && password, "FERROX_URL and FERROX_PASSWORD are needed");
// A user with a TOTP second factor: FERROX_TFA_USER (user@realm), _PASSWORD, _SECRET (base32).
const tfa = process.env.FERROX_TFA_USER
  ? { user: process.env.FERROX_TFA_USER, password: process.env.FERROX_TFA_PASSWORD, secret: process.env.FERROX_TFA_SECRET }
  : null;

/** RFC 6238 TOTP (SHA-1, 30 s, 6 digits), as authenticator apps compute it. */
function totp(base32, time = Date.now() / 1000) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const c of base32.replace(/=+$/, "").toUpperCase()) bits += alphabet.indexOf(c).toString(2).padStart(5, "0");
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(time / 30)));
  const mac = createHmac("sha1", key).update(counter).digest();
  const o = mac[mac.length - 1] & 0xf;
  return String((mac.readUInt32BE(o) & 0x7fffffff) % 1_000_000).padStart(6, "0");
}

// A fresh profile per run (the persistent context is how playwright takes one).
const context = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "ferrox-chromium-")), {
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-quic",
  ],
  ignoreHTTPSErrors: true,
  viewport: { width: 1440, height: 900 },
});
const browser = context;
const page = await context.newPage();
const pageErrors = [];
page.on("pageerror", (e) => pageErrors.push(e.message));
page.setDefaultTimeout(30_000);

let step = "start";
async function check(name, f) {
  step = name;
  const t0 = Date.now();
  await f();
  console.log(`ok - ${name} (${Date.now() - t0} ms)`);
}
const shot = (name) => page.screenshot({ path: join(shots, `${name}.png`) });
const treeRow = (key) => page.locator(`.tree-row[data-key="${key}"]`);
const dialog = () => page.locator(".dialog");
/** Waits for the task viewer to show the task's end; returns the exit status. */
async function taskResult(timeout = 120_000) {
  const status = page.locator("[data-testid=task-status]");
  await status.waitFor();
  await page.waitForFunction(() => {
    const t = document.querySelector("[data-testid=task-status]")?.textContent ?? "";
    return t && !t.includes("running") && !t.includes("…");
  }, null, { timeout });
  const text = (await status.textContent()) ?? "";
  await page.locator(".dialog .close").last().click();
  return text.replace("Status: ", "");
}

try {
  await check("a wrong password shows an error", async () => {
    await page.goto(url);
    await page.fill("input[name=password]", "wrong-password");
    await page.click("button[type=submit]");
    await page.locator(".login .error").waitFor({ timeout: 15_000 });
    assert.match(await page.locator(".login .error").textContent(), /Login failed/);
    await shot("login-error");
  });

  await check("log in; the tree shows every node and a guest on each", async () => {
    await page.fill("input[name=password]", password);
    await page.click("button[type=submit]");
    for (const [node, vmid] of Object.entries(guests)) {
      await treeRow(`node/${node}`).waitFor();
      await treeRow(`node/${node}/qemu/${vmid}`).waitFor();
    }
    assert.equal(await page.locator("[data-testid=user]").textContent(), "root@pam");
    await page.waitForTimeout(1500);
    await shot("datacenter-summary");
  });

  await check("the URL keeps the selection over a reload", async () => {
    await page.goto(`${url}#/node/n1/summary`);
    await page.locator("h1", { hasText: "Node 'n1'" }).waitFor();
    await page.reload();
    await page.locator("h1", { hasText: "Node 'n1'" }).waitFor();
    await page.locator(".chart canvas").first().waitFor();
    await page.waitForTimeout(1000);
    await shot("node-summary");
  });

  await check("keyboard: arrows move the selection in the tree", async () => {
    await treeRow("node/n1").click();
    await page.locator(".tree").focus();
    await page.keyboard.press("ArrowDown");
    await page.waitForFunction(() => location.hash.startsWith("#/node/n1/qemu/"));
    await page.keyboard.press("ArrowUp");
    await page.waitForFunction(() => location.hash === "#/node/n1");
  });

  const created = 200;
  await check("create a guest with the wizard", async () => {
    await page.click("text=Create VM");
    await dialog().locator("select[name=node]").selectOption("n2");
    await dialog().locator("input[name=vmid]").fill(String(created));
    await dialog().locator("input[name=name]").fill("wizard-vm");
    await dialog().locator("button", { hasText: "Next" }).click();
    await dialog().locator("input[name=cores]").fill("1");
    await dialog().locator("button", { hasText: "Next" }).click();
    await dialog().locator("input[name=memory]").fill("64");
    await dialog().locator("button", { hasText: "Next" }).click();
    await dialog().locator("input[name=size]").fill("1");
    await dialog().locator("button", { hasText: "Next" }).click();
    await dialog().locator("button", { hasText: "Next" }).click();
    await shot("create-vm");
    await dialog().locator("button", { hasText: "Finish" }).click();
    assert.equal(await taskResult(), "OK");
    await treeRow(`node/n2/qemu/${created}`).waitFor();
  });

  await check("grow the new guest's disk from the hardware view", async () => {
    await page.goto(`${url}#/node/n2/qemu/${created}/hardware`);
    const disk = page.locator('tr[data-key="scsi0"]');
    await disk.locator("td.mono", { hasText: "size=1G" }).waitFor();
    await disk.locator("button", { hasText: "Resize" }).click();
    await dialog().locator("input[name=grow]").fill("1");
    await dialog().locator("button", { hasText: "Resize disk" }).click();
    assert.equal(await taskResult(), "OK");
    await disk.locator("td.mono", { hasText: "size=2G" }).waitFor({ timeout: 15_000 });
  });

  await check("snapshots: take one, see it in the tree, roll back to it, remove it", async () => {
    await page.goto(`${url}#/node/n2/qemu/${created}/snapshot`);
    await page.locator("tr[data-snapshot=current]").waitFor();
    await page.locator("button", { hasText: "Take Snapshot" }).first().click();
    await dialog().locator("input[name=snapname]").fill("1bad");
    await dialog().locator("button", { hasText: "Take Snapshot" }).click();
    await dialog().locator("[role=alert]", { hasText: "snapname" }).waitFor();
    await dialog().locator("input[name=snapname]").fill("before-upgrade");
    await dialog().locator("textarea[name=description]").fill("known good");
    await dialog().locator("button", { hasText: "Take Snapshot" }).click();
    assert.equal(await taskResult(), "OK");
    const row = page.locator("tr[data-snapshot=before-upgrade]");
    await row.locator("td.description", { hasText: "known good" }).waitFor({ timeout: 15_000 });
    // "current" sits under the snapshot it builds on: one level deeper. The view may still
    // show the list it polled while the snapshot was being prepared (current not yet under
    // it), so wait for the next poll rather than judge that one.
    await page.waitForFunction(() => {
      const indent = (name) => parseFloat(document.querySelector(`tr[data-snapshot=${name}] td`)?.style.paddingLeft ?? "NaN");
      return indent("current") > indent("before-upgrade");
    }, null, { timeout: 15_000 });
    await shot("guest-snapshots");
    page.once("dialog", (d) => d.accept());
    await row.locator("button", { hasText: "Rollback" }).click();
    assert.equal(await taskResult(), "OK");
    page.once("dialog", (d) => d.accept());
    await row.locator("button", { hasText: "Remove" }).click();
    assert.equal(await taskResult(), "OK");
    await row.waitFor({ state: "detached", timeout: 15_000 });
  });

  await check("backup: back up now, the archive is listed, restore it over the stopped guest", async () => {
    await page.goto(`${url}#/node/n2/qemu/${created}/backup`);
    await page.locator("button", { hasText: "Backup now" }).click();
    await dialog().locator("select[name=mode]").selectOption("snapshot");
    await dialog().locator("button", { hasText: "Backup" }).click();
    assert.equal(await taskResult(), "OK");
    await page.goto(`${url}#/node/n2/qemu/${created}/summary`);
    await page.goto(`${url}#/node/n2/qemu/${created}/backup`);
    const row = page.locator("tr[data-archive]").first();
    await row.waitFor({ timeout: 15_000 });
    // the default notes template names the guest
    await row.locator("td.notes", { hasText: "wizard-vm" }).waitFor();
    await row.locator("button", { hasText: "Protect" }).click();
    await row.locator("td.protected", { hasText: "yes" }).waitFor({ timeout: 15_000 });
    assert.ok(await row.locator("button", { hasText: "Remove" }).isDisabled());
    await shot("guest-backup");
    await row.locator("button", { hasText: "Restore" }).click();
    await dialog().locator("p", { hasText: "This replaces VM" }).waitFor();
    await dialog().locator("button", { hasText: "Restore" }).click();
    assert.equal(await taskResult(), "OK");
  });

  await check("start it; the noVNC canvas shows the guest's screen", async () => {
    await page.goto(`${url}#/node/n2/qemu/${created}/summary`);
    await page.locator(".power button", { hasText: "Start" }).click();
    assert.equal(await taskResult(), "OK");
    await page.locator("[data-testid=guest-status]", { hasText: "running" }).waitFor();
    await page.goto(`${url}#/node/n2/qemu/${created}/console`);
    await page.locator("[data-testid=console-state]", { hasText: "connected" }).waitFor();
    // SeaBIOS draws its text screen within a few seconds under TCG.
    await page.waitForFunction(() => {
      const c = document.querySelector("[data-testid=vnc-screen] canvas");
      if (!c || c.width < 100) return false;
      const data = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
      let lit = 0;
      for (let i = 0; i < data.length; i += 4) if (data[i] + data[i + 1] + data[i + 2] > 60) lit++;
      return lit > 200;
    }, null, { timeout: 60_000 });
    await shot("guest-console-vnc");
    // Stopped again: its disk is on node-local storage, and the plan below balances the
    // running echo guests.
    await page.goto(`${url}#/node/n2/qemu/${created}/summary`);
    await page.locator(".power button", { hasText: "Stop" }).click();
    assert.equal(await taskResult(), "OK");
  });

  await check("the serial console of a guest on another node echoes input", async () => {
    const vmid = guests.n2;
    await page.goto(`${url}#/node/n2/qemu/${vmid}/serial0`);
    await page.locator("[data-testid=console-state]", { hasText: "connected" }).waitFor();
    await page.locator("[data-testid=serial-terminal]").click();
    await page.keyboard.type("hello-ferrox");
    await page.waitForFunction(() => (document.querySelector("[data-testid=serial-terminal]")?.textContent ?? "").includes("hello-ferrox"), null, { timeout: 20_000 });
    await shot("guest-serial-console");
  });

  await check("migrate with the dialog: allowed targets, then the guest under the other node", async () => {
    const vmid = guests.n2;
    await page.goto(`${url}#/node/n2/qemu/${vmid}/summary`);
    await page.locator(".power button", { hasText: "Migrate" }).click();
    const select = dialog().locator("select[name=target]");
    // Preact sets an option's value as a property: find it by its text.
    await select.locator("option", { hasText: "n3" }).waitFor({ state: "attached" });
    await shot("migrate-dialog");
    await select.selectOption("n3");
    await dialog().locator("button", { hasText: "Migrate" }).click();
    assert.equal(await taskResult(), "OK");
    await treeRow(`node/n3/qemu/${vmid}`).waitFor({ timeout: 30_000 });
    guests.n3b = vmid;
  });

  await check("a stale-digest edit is refused with a message", async () => {
    const vmid = guests.n1;
    await page.goto(`${url}#/node/n1/qemu/${vmid}/hardware`);
    const memoryRow = page.locator('tr[data-key="memory"]');
    await memoryRow.locator("button", { hasText: "Edit" }).click();
    // Someone else changes the config meanwhile.
    await page.evaluate(async (vmid) => {
      const s = JSON.parse(localStorage.getItem("ferrox-session"));
      const r = await fetch(`/api2/json/nodes/n1/qemu/${vmid}/config`, {
        method: "PUT",
        headers: { CSRFPreventionToken: s.csrf, "Content-Type": "application/x-www-form-urlencoded" },
        body: "cores=2",
      });
      if (!r.ok) throw new Error(`concurrent edit failed: ${r.status}`);
    }, vmid);
    await dialog().locator("input[name=value]").fill("96");
    await dialog().locator("button", { hasText: "OK" }).click();
    await dialog().locator(".error").waitFor();
    assert.match(await dialog().locator(".error").textContent(), /digest/i);
    await shot("hardware-stale-digest");
    await page.locator(".dialog .close").click();
    // Nothing was lost: the other edit stands, the refused one did not land.
    await page.reload();
    await page.locator('tr[data-key="cores"] td.mono', { hasText: "2" }).waitFor();
    assert.doesNotMatch(await page.locator('tr[data-key="memory"] td.mono').textContent(), /^96$/);
  });

  await check("CRS options: a bad threshold is refused naming it, a good one is saved", async () => {
    await page.goto(`${url}#/datacenter/options`);
    await page.locator("button", { hasText: "Edit" }).click();
    await dialog().locator("select[name=ha]").selectOption("static");
    await dialog().locator("input[name=ha-auto-rebalance-threshold]").fill("lots");
    await dialog().locator("button", { hasText: "OK" }).click();
    await dialog().locator(".error", { hasText: "threshold" }).waitFor();
    await shot("options-refused");
    await dialog().locator("input[name=ha-auto-rebalance-threshold]").fill("0.4");
    await dialog().locator("button", { hasText: "OK" }).click();
    await dialog().waitFor({ state: "detached" });
    await page.locator("table.kv td", { hasText: "static" }).first().waitFor();
  });

  await check("upload an ISO image into a storage; its checksum is checked; it is listed", async () => {
    const image = Buffer.alloc(1 << 20, 7);
    await page.goto(`${url}#/node/n1/storage/local`);
    await page.locator("button", { hasText: "Upload" }).first().click();
    await dialog().locator("input[name=file]").setInputFiles({ name: "web.iso", mimeType: "application/octet-stream", buffer: image });
    await dialog().locator("select[name=algorithm]").selectOption("sha256");
    await dialog().locator("input[name=checksum]").fill(createHash("sha256").update(image).digest("hex"));
    await shot("storage-upload");
    await dialog().locator("button", { hasText: "Upload" }).click();
    assert.equal(await taskResult(), "OK");
    await page.locator('tr[data-volid="local:iso/web.iso"]').waitFor({ timeout: 15_000 });
  });

  if (process.env.FERROX_STORAGE_DIR) {
    await check("a btrfs storage on a path that is not btrfs is refused naming the path", async () => {
      await page.goto(`${url}#/datacenter/storage`);
      await page.locator("button", { hasText: "Add: BTRFS" }).click();
      await dialog().locator("input[name=storage]").fill("webbtrfs");
      await dialog().locator("input[name=path]").fill(process.env.FERROX_STORAGE_DIR);
      await dialog().locator("button", { hasText: "Add" }).click();
      await dialog().locator("[role=alert]", { hasText: "not a btrfs file system" }).waitFor();
      await dialog().locator("[role=alert]", { hasText: "path" }).waitFor();
      await shot("storage-btrfs-refused");
      await dialog().locator("button[aria-label=Close]").click();
    });

    await check("add a directory storage", async () => {
      await page.goto(`${url}#/datacenter/storage`);
      await page.locator("button", { hasText: "Add: Directory" }).click();
      await dialog().locator("input[name=storage]").fill("webdir");
      await dialog().locator("input[name=path]").fill(process.env.FERROX_STORAGE_DIR);
      await dialog().locator("button", { hasText: "Add" }).click();
      await page.locator("table.grid td", { hasText: "webdir" }).first().waitFor();
      await treeRow("node/n1/storage/webdir").waitFor({ timeout: 15_000 });
    });
  }

  await check("backup jobs: a bad schedule is refused naming it; a job is added, disabled, removed", async () => {
    await page.goto(`${url}#/datacenter/backup`);
    await page.locator("button", { hasText: "Add backup job" }).click();
    await dialog().locator("input[name=schedule]").fill("25:00");
    await dialog().locator("button", { hasText: "Add" }).click();
    await dialog().locator("[role=alert]", { hasText: "schedule" }).waitFor();
    await dialog().locator("input[name=schedule]").fill("mon..fri 21:00");
    await dialog().locator("input[name=vmid]").fill(String(guests.n1));
    await dialog().locator("button", { hasText: "Add" }).click();
    const row = page.locator("tr[data-job]").first();
    await row.locator("td.mono", { hasText: "mon..fri 21:00" }).waitFor({ timeout: 15_000 });
    await shot("backup-jobs");
    await row.locator("button", { hasText: "Disable" }).click();
    await row.locator("button", { hasText: "Enable" }).waitFor({ timeout: 15_000 });
    page.once("dialog", (d) => d.accept());
    await row.locator("button", { hasText: "Remove" }).click();
    await page.locator("tr[data-job]").first().waitFor({ state: "detached", timeout: 15_000 });
  });

  await check("an HA rule the manager refuses shows its reason", async () => {
    await page.goto(`${url}#/datacenter/ha`);
    await page.locator("button", { hasText: "Add resource affinity rule" }).click();
    await dialog().locator("input[name=rule]").fill("together");
    await dialog().locator("input[name=resources]").fill(`vm:${guests.n1},vm:${guests.n3}`);
    await dialog().locator("button", { hasText: "Add" }).click();
    await page.locator("table[aria-label='HA rules'] td", { hasText: "together" }).waitFor();
    await page.locator("button", { hasText: "Add resource affinity rule" }).click();
    await dialog().locator("input[name=rule]").fill("apart");
    await dialog().locator("input[name=resources]").fill(`vm:${guests.n1},vm:${guests.n3}`);
    await dialog().locator("select[name=affinity]").selectOption("negative");
    await dialog().locator("button", { hasText: "Add" }).click();
    await dialog().locator(".error").waitFor();
    assert.match(await dialog().locator(".error").textContent(), /positive resource affinity rule/);
    await shot("ha-rule-refused");
    await page.locator(".dialog .close").click();
    // Remove the accepted rule again, so that the plan below is free to move guests.
    page.once("dialog", (d) => d.accept());
    await page.locator("table[aria-label='HA rules'] tr", { hasText: "together" }).locator("button", { hasText: "Remove" }).click();
    await page.locator("table[aria-label='HA rules'] td", { hasText: "together" }).waitFor({ state: "detached" });
  });

  await check("disarm and arm HA", async () => {
    await page.locator("button", { hasText: "Disarm HA (freeze)" }).click();
    await page.locator("table[aria-label='HA status'] td", { hasText: /disarm/ }).first().waitFor({ timeout: 30_000 });
    await page.locator("button", { hasText: "Arm HA" }).click();
    await page.locator("table[aria-label='HA status'] td", { hasText: /^armed/ }).first().waitFor({ timeout: 30_000 });
    // The history (GET /cluster/ha/history) answers: no node was lost in this cluster.
    await page.locator("h2", { hasText: "Fence events" }).waitFor();
    await page.locator("p", { hasText: "No node was lost since the history began." }).waitFor({ timeout: 15_000 });
    await page.locator("table[aria-label='HA state changes']").waitFor();
    await shot("ha");
  });

  await check("the balancing plan of an imbalanced cluster: preview, apply, moves done", async () => {
    await page.goto(`${url}#/datacenter/plan`);
    await page.locator("table[aria-label='Planned migrations']").waitFor({ timeout: 30_000 });
    const before = Number(await page.locator("[data-testid=imbalance-before]").textContent());
    const after = Number(await page.locator("[data-testid=imbalance-after]").textContent());
    assert.ok(after < before, `imbalance ${before} -> ${after}`);
    await shot("balancing-plan");
    await page.locator("button", { hasText: "Apply plan" }).click();
    assert.equal(await taskResult(300_000), "OK");
    await page.locator("button", { hasText: "Refresh" }).click();
    await page.locator("[data-testid=plan-reason]").waitFor({ timeout: 30_000 });
    await shot("balancing-plan-done");
  });

  await check("dark theme", async () => {
    await page.goto(`${url}#/node/n1/qemu/${guests.n1}/summary`);
    await page.locator("button", { hasText: "Dark theme" }).click();
    await page.waitForTimeout(1500);
    assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), "dark");
    await shot("guest-summary-dark");
    await page.locator("button", { hasText: "Light theme" }).click();
  });

  await check("log out", async () => {
    await page.locator("button", { hasText: "Logout" }).click();
    await page.locator("form.login").waitFor();
  });

  if (tfa) {
    await check("a user with a second factor logs in with a TOTP code (a wrong one is refused)", async () => {
      const [name, realm] = tfa.user.split("@");
      await page.fill("input[name=username]", name);
      await page.locator("select[name=realm]").selectOption(realm);
      await page.fill("input[name=password]", tfa.password);
      await page.click("button[type=submit]");
      await page.locator("input[name=tfa-code]").waitFor();
      await page.fill("input[name=tfa-code]", "000000");
      await page.click("button[type=submit]");
      await page.locator(".login .error", { hasText: "wrong code" }).waitFor({ timeout: 15_000 });
      await page.fill("input[name=tfa-code]", totp(tfa.secret));
      await page.click("button[type=submit]");
      await page.locator("[data-testid=user]", { hasText: tfa.user }).waitFor({ timeout: 15_000 });
      await page.locator("button", { hasText: "Logout" }).click();
      await page.locator("form.login").waitFor();
    });
  }

  assert.deepEqual(pageErrors, [], "errors in the page");
  console.log(`screenshots in ${shots}`);
} catch (e) {
  console.error(`FAILED: ${step}: ${e.stack ?? e}`);
  await shot(`failed-${step.replace(/[^a-z0-9]+/gi, "-")}`).catch(() => {});
  console.error(`screenshots in ${shots}`);
  await browser.close();
  process.exit(1);
}
await browser.close();
