// Datacenter: summary, cluster, options (CRS), storage, backup jobs, HA, balancing plan,
// tasks.
import { useState } from "preact/hooks";
import { post, put } from "../../api";
import { Dialog, ErrorText, Field, Gauge, KeyValues, Tabs } from "../../components/ui";
import { bytes } from "../../lib/format";
import { useAction, usePoll } from "../../lib/hooks";
import { Resource } from "../../lib/tree";
import { HaPanel } from "./Ha";
import { BackupJobs } from "./BackupJobs";
import { PlanView } from "../plan/Plan";
import { TaskList } from "../tasks/Tasks";
import { crsString } from "./crs";

const TABS: [string, string][] = [
  ["summary", "Summary"],
  ["cluster", "Cluster"],
  ["options", "Options"],
  ["storage", "Storage"],
  ["backup", "Backup"],
  ["ha", "HA"],
  ["plan", "Balancing"],
  ["tasks", "Tasks"],
];

export function Datacenter({ tab, resources }: { tab: string; resources: Resource[] }) {
  return (
    <section class="view">
      <h1>Datacenter</h1>
      <Tabs tabs={TABS} current={tab} href={(t) => `#/datacenter/${t}`} />
      {tab === "summary" && <Summary resources={resources} />}
      {tab === "cluster" && <ClusterTab />}
      {tab === "options" && <Options />}
      {tab === "storage" && <Storage />}
      {tab === "backup" && <BackupJobs />}
      {tab === "ha" && <HaPanel resources={resources} />}
      {tab === "plan" && <PlanView />}
      {tab === "tasks" && <TaskList path="/cluster/tasks" />}
    </section>
  );
}

function Summary({ resources }: { resources: Resource[] }) {
  const status = usePoll<any[]>("/cluster/status", 5000);
  const ha = usePoll<any[]>("/cluster/ha/status/current", 5000);
  const cluster = status.data?.find((r) => r.type === "cluster");
  const nodes = resources.filter((r) => r.type === "node");
  const online = nodes.filter((n) => n.status === "online");
  const guests = resources.filter((r) => r.type === "qemu" || r.type === "lxc");
  const running = guests.filter((g) => g.status === "running");
  const storages = resources.filter((r) => r.type === "storage");
  const sum = (rs: Resource[], f: (r: Resource) => number) => rs.reduce((a, r) => a + (f(r) || 0), 0);
  const cpuUsed = sum(online, (n) => (n.cpu ?? 0) * (n.maxcpu ?? 0));
  const cpuTotal = sum(online, (n) => n.maxcpu ?? 0);
  const memUsed = sum(online, (n) => n.mem ?? 0);
  const memTotal = sum(online, (n) => n.maxmem ?? 0);
  const diskUsed = sum(storages, (s) => s.disk ?? 0);
  const diskTotal = sum(storages, (s) => s.maxdisk ?? 0);
  const armed = ha.data?.find((r) => r.type === "fencing" || r.id === "fencing" || r.armed_state)?.armed_state;
  const quorum = ha.data?.find((r) => r.type === "quorum");
  return (
    <div class="panel-grid">
      <div class="panel">
        <h2>Health</h2>
        <ErrorText error={status.error} />
        <KeyValues rows={[
          ["Cluster", cluster ? `${cluster.name}` : "standalone node"],
          ["Quorum", cluster ? (cluster.quorate ? "quorate" : "NOT quorate") : quorum?.status ?? "-"],
          ["Nodes", `${online.length} online / ${nodes.length}`],
          ["Guests", `${running.length} running / ${guests.length}`],
          ["HA", armed ? (armed === "armed" ? "armed" : `disarmed (${armed})`) : "armed"],
        ]} />
      </div>
      <div class="panel">
        <h2>Resources</h2>
        <Gauge label="CPU" used={cpuUsed} total={cpuTotal} text={`${(cpuTotal ? (cpuUsed / cpuTotal) * 100 : 0).toFixed(1)} % of ${cpuTotal} CPUs`} />
        <Gauge label="Memory" used={memUsed} total={memTotal} text={`${bytes(memUsed)} of ${bytes(memTotal)}`} />
        <Gauge label="Storage" used={diskUsed} total={diskTotal} text={`${bytes(diskUsed)} of ${bytes(diskTotal)}`} />
      </div>
    </div>
  );
}

function ClusterTab() {
  const status = usePoll<any[]>("/cluster/status", 5000);
  const join = usePoll<any>("/cluster/config/join", 0);
  const nodes = status.data?.filter((r) => r.type === "node") ?? [];
  return (
    <div>
      <h2>Members</h2>
      <ErrorText error={status.error} />
      <table class="grid">
        <thead><tr><th>Node</th><th>ID</th><th>Address</th><th>Online</th></tr></thead>
        <tbody>{nodes.map((n) => <tr><td>{n.name}{n.local ? " (this node)" : ""}</td><td>{n.nodeid}</td><td>{n.ip}</td><td>{n.online ? "yes" : "no"}</td></tr>)}</tbody>
      </table>
      <h2>Join information</h2>
      <ErrorText error={join.error} />
      {join.data && (
        <>
          <p>Join a new node with <code>ferrox cluster join &lt;address&gt; --fingerprint &lt;fingerprint&gt;</code> against one of these members:</p>
          <table class="grid">
            <thead><tr><th>Node</th><th>Address</th><th>Fingerprint</th></tr></thead>
            <tbody>{join.data.nodelist.map((m: any) => <tr><td>{m.name}</td><td>{m.pve_addr || m.address}</td><td class="mono">{m.pve_fp}</td></tr>)}</tbody>
          </table>
        </>
      )}
    </div>
  );
}

function Options() {
  const opts = usePoll<any>("/cluster/options", 0);
  const [edit, setEdit] = useState<Record<string, string> | null>(null);
  const action = useAction();
  const crs = opts.data?.crs ?? {};
  const start = () => {
    const v: Record<string, string> = {};
    for (const [k, val] of Object.entries(crs)) v[k] = typeof val === "boolean" ? (val ? "1" : "0") : String(val);
    setEdit(v);
  };
  const save = async () => {
    const ok = await action.run(() => put("/cluster/options", { crs: crsString(edit!) }));
    if (ok !== undefined) {
      setEdit(null);
      opts.reload();
    }
  };
  const field = (k: string, label: string, input: "text" | "bool" | string[]) => (
    <Field label={label}>
      {input === "text" ? (
        <input name={k} value={edit?.[k] ?? ""} onInput={(e) => setEdit({ ...edit!, [k]: (e.target as HTMLInputElement).value })} />
      ) : input === "bool" ? (
        <input name={k} type="checkbox" checked={edit?.[k] === "1"} onChange={(e) => setEdit({ ...edit!, [k]: (e.target as HTMLInputElement).checked ? "1" : "0" })} />
      ) : (
        <select name={k} value={edit?.[k] ?? input[0]} onChange={(e) => setEdit({ ...edit!, [k]: (e.target as HTMLSelectElement).value })}>
          {input.map((o) => <option value={o}>{o}</option>)}
        </select>
      )}
    </Field>
  );
  return (
    <div>
      <h2>Cluster Resource Scheduling</h2>
      <ErrorText error={opts.error} />
      <KeyValues rows={Object.entries(crs).map(([k, v]) => [k, String(v)])} />
      <button onClick={start}>Edit</button>
      {edit && (
        <Dialog title="Edit: Cluster Resource Scheduling" onClose={() => setEdit(null)}>
          {field("ha", "Scheduler mode", ["basic", "static", "dynamic"])}
          {field("ha-rebalance-on-start", "Rebalance on start", "bool")}
          {field("ha-auto-rebalance", "Automatic rebalancing", "bool")}
          {field("ha-auto-rebalance-threshold", "Imbalance threshold", "text")}
          {field("ha-auto-rebalance-method", "Method", ["bruteforce", "topsis"])}
          {field("ha-auto-rebalance-hold-duration", "Hold duration (rounds)", "text")}
          {field("ha-auto-rebalance-margin", "Minimum improvement", "text")}
          {field("balance", "Balance non-HA guests (Ferrox)", "bool")}
          {field("balance-threshold", "Balancing threshold (Ferrox imbalance)", "text")}
          {field("balance-interval", "Balancing interval (s)", "text")}
          <ErrorText error={action.error} />
          <button class="primary" disabled={action.busy} onClick={save}>OK</button>
        </Dialog>
      )}
    </div>
  );
}

const STORAGE_TYPES: Record<string, string> = { dir: "Directory", btrfs: "BTRFS" };

function Storage() {
  const list = usePoll<any[]>("/storage", 5000);
  const [adding, setAdding] = useState<string | null>(null);
  const [form, setForm] = useState({ storage: "", path: "", content: "images,iso,backup", shared: false });
  const action = useAction();
  const add = async () => {
    const ok = await action.run(() => post("/storage", { storage: form.storage, type: adding, path: form.path, content: form.content, shared: form.shared }));
    if (ok !== undefined) {
      setAdding(null);
      list.reload();
    }
  };
  return (
    <div>
      <div class="toolbar">
        {Object.entries(STORAGE_TYPES).map(([type, label]) => (
          <button onClick={() => { action.setError(null); setAdding(type); }}>Add: {label}</button>
        ))}
      </div>
      <ErrorText error={list.error} />
      <table class="grid">
        <thead><tr><th>ID</th><th>Type</th><th>Content</th><th>Path</th><th>Shared</th></tr></thead>
        <tbody>{(list.data ?? []).map((s) => <tr><td>{s.storage}</td><td>{s.type}</td><td>{s.content}</td><td>{s.path}</td><td>{s.shared ? "yes" : "no"}</td></tr>)}</tbody>
      </table>
      {adding && (
        <Dialog title={`Add: ${STORAGE_TYPES[adding]}`} onClose={() => setAdding(null)}>
          <Field label="ID"><input name="storage" value={form.storage} onInput={(e) => setForm({ ...form, storage: (e.target as HTMLInputElement).value })} /></Field>
          <Field label={adding === "btrfs" ? "Path (on a btrfs file system)" : "Directory"}><input name="path" value={form.path} onInput={(e) => setForm({ ...form, path: (e.target as HTMLInputElement).value })} /></Field>
          <Field label="Content"><input name="content" value={form.content} onInput={(e) => setForm({ ...form, content: (e.target as HTMLInputElement).value })} /></Field>
          <Field label="Shared"><input type="checkbox" checked={form.shared} onChange={(e) => setForm({ ...form, shared: (e.target as HTMLInputElement).checked })} /></Field>
          <ErrorText error={action.error} />
          <button class="primary" disabled={action.busy} onClick={add}>Add</button>
        </Dialog>
      )}
    </div>
  );
}
