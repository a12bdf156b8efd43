// Unit tests of the UI's pure logic (node's test runner, after esbuild).
import { test } from "node:test";
import assert from "node:assert/strict";
import { buildTree, visibleWindow, Resource } from "../src/lib/tree";
import { parseRoute, routeKey } from "../src/lib/route";
import { bytes, duration, parseSize, taskTitle } from "../src/lib/format";
import { crsString } from "../src/views/datacenter/crs";
import { snapshotTree } from "../src/lib/snapshots";

const resources: Resource[] = [
  { id: "node/n2", type: "node", node: "n2", status: "online" },
  { id: "node/n1", type: "node", node: "n1", status: "online", hastate: "maintenance" },
  { id: "node/n3", type: "node", node: "n3", status: "offline" },
  { id: "qemu/101", type: "qemu", node: "n1", vmid: 101, name: "db", status: "running", hastate: "started" },
  { id: "qemu/100", type: "qemu", node: "n1", vmid: 100, name: "web", status: "stopped", lock: "migrate" },
  { id: "qemu/200", type: "qemu", node: "n2", vmid: 200, status: "running" },
  { id: "storage/n1/local", type: "storage", node: "n1", storage: "local" },
  { id: "pool/prod", type: "pool", pool: "prod" },
];

test("the tree: nodes sorted, guests by id under their node, then storages, then pools", () => {
  const rows = buildTree(resources, new Set());
  assert.deepEqual(rows.map((r) => r.key), [
    "datacenter", "node/n1", "node/n1/qemu/100", "node/n1/qemu/101", "node/n1/storage/local",
    "node/n2", "node/n2/qemu/200", "node/n3", "pool/prod",
  ]);
  const byKey = Object.fromEntries(rows.map((r) => [r.key, r]));
  assert.equal(byKey["node/n3"].icon, "node-offline");
  assert.deepEqual(byKey["node/n1"].badges, ["maintenance"]);
  assert.deepEqual(byKey["node/n1/qemu/100"].badges, ["migrating"]);
  assert.equal(byKey["node/n1/qemu/100"].icon, "vm-stopped");
  assert.deepEqual(byKey["node/n1/qemu/101"].badges, ["ha"]);
  assert.equal(byKey["node/n1/qemu/101"].label, "101 (db)");
});

test("collapsing hides children; a search shows matches whatever is collapsed", () => {
  const collapsed = new Set(["node/n1"]);
  assert.ok(!buildTree(resources, collapsed).some((r) => r.key.startsWith("node/n1/")));
  const found = buildTree(resources, collapsed, "db").map((r) => r.key);
  assert.deepEqual(found, ["datacenter", "node/n1", "node/n1/qemu/101"]);
  assert.deepEqual(buildTree(resources, new Set(["datacenter"])).map((r) => r.key), ["datacenter"]);
});

test("10 000 guests: only the rows in view are rendered", () => {
  const many: Resource[] = [{ id: "node/n1", type: "node", node: "n1", status: "online" }];
  for (let i = 0; i < 10000; i++) many.push({ id: `qemu/${1000 + i}`, type: "qemu", node: "n1", vmid: 1000 + i, status: "running" });
  const rows = buildTree(many, new Set());
  assert.equal(rows.length, 10002);
  const w = visibleWindow(rows.length, 26, 26 * 5000, 520, 10);
  assert.equal(w.first, 4990);
  assert.equal(w.last, 5030);
  assert.equal(w.totalHeight, 26 * 10002);
});

test("routes: the URL names the view and round-trips to the tree key", () => {
  assert.deepEqual(parseRoute("#/node/n1/qemu/100/console"), { kind: "guest", node: "n1", vmid: 100, tab: "console" });
  assert.equal(routeKey(parseRoute("#/node/n1/qemu/100")), "node/n1/qemu/100");
  assert.deepEqual(parseRoute("#/node/n2"), { kind: "node", node: "n2", tab: "summary" });
  assert.deepEqual(parseRoute("#/datacenter/ha"), { kind: "datacenter", tab: "ha" });
  assert.deepEqual(parseRoute(""), { kind: "datacenter", tab: "summary" });
  assert.equal(routeKey(parseRoute("#/node/n1/storage/local")), "node/n1/storage/local");
  // Not a guest id: the node view.
  assert.equal(parseRoute("#/node/n1/qemu/abc").kind, "node");
});

test("formats", () => {
  assert.equal(bytes(512), "512 B");
  assert.equal(bytes(1536), "1.50 KiB");
  assert.equal(bytes(64 * 1024 ** 2), "64.0 MiB");
  assert.equal(duration(3661), "01:01:01");
  assert.equal(duration(90061), "1 day 01:01:01");
  assert.equal(parseSize("32G"), 32 * 1024 ** 3);
  assert.equal(parseSize("512M"), 512 * 1024 ** 2);
  assert.equal(parseSize("lots"), null);
  assert.equal(taskTitle("qmstart", "100"), "VM/CT 100 - Start");
  assert.equal(taskTitle("crsplan", ""), "Balancing plan");
  assert.equal(taskTitle("qmsnapshot", "200"), "VM/CT 200 - Snapshot");
  assert.equal(taskTitle("imgcopy", "local"), "Storage local - Upload");
  assert.equal(taskTitle("download", "local"), "Storage local - Download");
});

test("the CRS settings become one crs property string", () => {
  assert.equal(crsString({ ha: "dynamic", "ha-auto-rebalance": "1", "ha-auto-rebalance-threshold": "0.3", "ha-auto-rebalance-margin": "" }), "ha=dynamic,ha-auto-rebalance=1,ha-auto-rebalance-threshold=0.3");
  assert.equal(crsString({}), "ha=basic");
  assert.equal(crsString({ ha: "static", balance: "1", "balance-interval": "60" }), "ha=static,balance=1,balance-interval=60");
});

test("snapshots: each under its parent, by time, 'current' last under the one it builds on", () => {
  const lines = snapshotTree([
    { name: "current", parent: "b2", running: 1 },
    { name: "b2", parent: "a", snaptime: 30 },
    { name: "b1", parent: "a", snaptime: 20 },
    { name: "a", snaptime: 10 },
    { name: "orphan", parent: "gone", snaptime: 5 },
  ]);
  assert.deepEqual(lines.map((l) => `${l.depth}:${l.row.name}`), ["0:orphan", "0:a", "1:b1", "1:b2", "2:current"]);
  assert.deepEqual(snapshotTree([{ name: "current" }]).map((l) => l.row.name), ["current"]);
  // A cycle in a hand-edited config neither loops nor hides a snapshot twice.
  const cyclic = snapshotTree([{ name: "x", parent: "y" }, { name: "y", parent: "x" }]);
  assert.ok(cyclic.length <= 2);
});

import { incidents, HistoryEntry } from "../src/lib/ha";

test("fence incidents: a lost node, its fence, and each service until it runs elsewhere", () => {
  const h: HistoryEntry[] = [
    { time: 100, type: "service", id: "vm:101", from: "request_start", to: "started", node: "n1" },
    { time: 200, type: "node", id: "n1", from: "online", to: "unknown" },
    { time: 202, type: "node", id: "n1", from: "unknown", to: "fence" },
    { time: 202, type: "service", id: "vm:100", from: "started", to: "fence", node: "n1" },
    { time: 202, type: "service", id: "vm:101", from: "started", to: "fence", node: "n1" },
    { time: 207, type: "node", id: "n1", from: "fence", to: "unknown" },
    { time: 207, type: "service", id: "vm:100", from: "fence", to: "recovery", node: "n1" },
    { time: 207, type: "service", id: "vm:100", from: "recovery", to: "started", node: "n2" },
    { time: 207, type: "service", id: "vm:101", from: "fence", to: "recovery", node: "n1" },
    { time: 209, type: "service", id: "vm:101", from: "recovery", to: "started", node: "n3" },
    { time: 230, type: "node", id: "n1", from: "unknown", to: "online" },
    // A node that was unknown for a moment and came back: an incident without a fence.
    { time: 300, type: "node", id: "n2", from: "online", to: "unknown" },
    { time: 304, type: "node", id: "n2", from: "unknown", to: "online" },
  ];
  const [fence, blip, ...rest] = incidents(h);
  assert.equal(rest.length, 0);
  assert.equal(fence.node, "n1");
  assert.equal(fence.fenced, true);
  assert.equal(fence.back, 230);
  assert.deepEqual(fence.recovered, { "vm:100": { node: "n2", after: 7 }, "vm:101": { node: "n3", after: 9 } });
  assert.deepEqual(fence.steps.map((s) => s.what).slice(0, 3), [
    "master lost contact with n1 (online → unknown)", "fencing node n1", "vm:100 to be recovered",
  ]);
  assert.equal(blip.fenced, false);
  assert.deepEqual(blip.recovered, {});
  assert.equal(blip.back, 304);
});
