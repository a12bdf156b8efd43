// Node: summary with RRD graphs, tasks, and storage content (also the storage view).
import { useState } from "preact/hooks";
import { post, upload } from "../../api";
import { Dialog, Field, Gauge, ErrorText, KeyValues, Tabs } from "../../components/ui";
import { RrdCharts, ChartSpec } from "../../components/RrdCharts";
import { useAction, usePoll } from "../../lib/hooks";
import { bytes, duration } from "../../lib/format";
import { Resource } from "../../lib/tree";
import { openTask, TaskList } from "../tasks/Tasks";

const NODE_CHARTS: ChartSpec[] = [
  { title: "CPU usage", unit: "percent", series: [{ field: "cpu", label: "CPU" }, { field: "iowait", label: "IO delay" }] },
  { title: "Server load", unit: "number", series: [{ field: "loadavg", label: "Load average" }] },
  { title: "Memory usage", unit: "bytes", series: [{ field: "memtotal", label: "Total" }, { field: "memused", label: "Used" }] },
  { title: "Network traffic", unit: "bytes/s", series: [{ field: "netin", label: "In" }, { field: "netout", label: "Out" }] },
  { title: "Disk IO", unit: "bytes/s", series: [{ field: "diskread", label: "Read" }, { field: "diskwrite", label: "Write" }] },
  { title: "CPU pressure", unit: "percent", series: [{ field: "pressurecpusome", label: "some" }] },
  { title: "IO pressure", unit: "percent", series: [{ field: "pressureiosome", label: "some" }, { field: "pressureiofull", label: "full" }] },
  { title: "Memory pressure", unit: "percent", series: [{ field: "pressurememorysome", label: "some" }, { field: "pressurememoryfull", label: "full" }] },
];

const TABS: [string, string][] = [
  ["summary", "Summary"],
  ["storage", "Storage"],
  ["tasks", "Tasks"],
];

export function NodeView({ node, tab, resources }: { node: string; tab: string; resources: Resource[] }) {
  const row = resources.find((r) => r.type === "node" && r.node === node);
  return (
    <section class="view">
      <h1>Node '{node}' {row?.status === "offline" && <span class="badge badge-offline">offline</span>}</h1>
      <Tabs tabs={TABS} current={tab} href={(t) => `#/node/${node}/${t}`} />
      {tab === "summary" && <Summary node={node} />}
      {tab === "storage" && <StorageList node={node} />}
      {tab === "tasks" && <TaskList path={`/nodes/${node}/tasks`} />}
    </section>
  );
}

function Summary({ node }: { node: string }) {
  const st = usePoll<any>(`/nodes/${node}/status`, 5000);
  const s = st.data;
  return (
    <div>
      <ErrorText error={st.error} />
      {s && (
        <div class="panel-grid">
          <div class="panel">
            <Gauge label="CPU" used={s.cpu ?? 0} total={1} />
            <Gauge label="Memory" used={s.memory?.used ?? 0} total={s.memory?.total ?? 1} text={`${bytes(s.memory?.used)} of ${bytes(s.memory?.total)}`} />
            <Gauge label="Root disk" used={s.rootfs?.used ?? 0} total={s.rootfs?.total ?? 1} text={`${bytes(s.rootfs?.used)} of ${bytes(s.rootfs?.total)}`} />
          </div>
          <div class="panel">
            <KeyValues rows={[
              ["Uptime", duration(s.uptime)],
              ["Load average", (s.loadavg ?? []).join(", ")],
              ["CPU", `${s.cpuinfo?.cpus ?? "?"} x ${s.cpuinfo?.model ?? ""}`],
              ["Kernel", s.kversion ?? "-"],
              ["Version", s.pveversion ?? "-"],
            ]} />
          </div>
        </div>
      )}
      <RrdCharts path={`/nodes/${node}/rrddata`} charts={NODE_CHARTS} />
    </div>
  );
}

function StorageList({ node }: { node: string }) {
  const list = usePoll<any[]>(`/nodes/${node}/storage`, 10000);
  return (
    <div>
      <ErrorText error={list.error} />
      <table class="grid">
        <thead><tr><th>Storage</th><th>Type</th><th>Content</th><th>Used</th><th>Total</th></tr></thead>
        <tbody>{(list.data ?? []).map((s) => <tr><td><a href={`#/node/${node}/storage/${s.storage}`}>{s.storage}</a></td><td>{s.type}</td><td>{s.content}</td><td>{bytes(s.used)}</td><td>{bytes(s.total)}</td></tr>)}</tbody>
      </table>
    </div>
  );
}

export function StorageView({ node, storage }: { node: string; storage: string }) {
  const base = `/nodes/${node}/storage/${storage}`;
  const status = usePoll<any>(`${base}/status`, 10000);
  const content = usePoll<any[]>(`${base}/content`, 10000);
  const [dialog, setDialog] = useState<"upload" | "download" | null>(null);
  const takesIso = String(status.data?.content ?? "").split(",").includes("iso");
  const started = (upid: string) => {
    setDialog(null);
    openTask(upid);
    content.reload();
  };
  return (
    <section class="view">
      <h1>Storage '{storage}' on node '{node}'</h1>
      <ErrorText error={status.error || content.error} />
      {status.data && <Gauge label="Usage" used={status.data.used ?? 0} total={status.data.total ?? 1} text={`${bytes(status.data.used)} of ${bytes(status.data.total)}`} />}
      {takesIso && (
        <div class="toolbar">
          <button onClick={() => setDialog("upload")}>Upload</button>
          <button onClick={() => setDialog("download")}>Download from URL</button>
        </div>
      )}
      <table class="grid" aria-label="Storage content">
        <thead><tr><th>Volume</th><th>Content</th><th>Format</th><th>Size</th><th>VM</th></tr></thead>
        <tbody>{(content.data ?? []).map((c) => <tr data-volid={c.volid}><td>{c.volid}</td><td>{c.content}</td><td>{c.format}</td><td>{bytes(c.size)}</td><td>{c.vmid ?? ""}</td></tr>)}</tbody>
      </table>
      {dialog && <IsoDialog base={base} kind={dialog} onClose={() => setDialog(null)} onStarted={started} />}
    </section>
  );
}

/** Upload an ISO image from this computer, or have the node download one. */
function IsoDialog({ base, kind, onClose, onStarted }: { base: string; kind: "upload" | "download"; onClose: () => void; onStarted: (upid: string) => void }) {
  const [file, setFile] = useState<File | null>(null);
  const [form, setForm] = useState({ url: "", filename: "", algorithm: "", checksum: "" });
  const action = useAction();
  const checksum = form.algorithm ? { "checksum-algorithm": form.algorithm, checksum: form.checksum } : {};
  const submit = () =>
    action.run(async () => {
      const upid =
        kind === "upload"
          ? await upload<string>(`${base}/upload`, { content: "iso", ...checksum }, file ?? new File([], ""))
          : await post<string>(`${base}/download-url`, { content: "iso", url: form.url, filename: form.filename, ...checksum });
      onStarted(upid);
    });
  const set = (k: keyof typeof form) => (e: Event) => setForm({ ...form, [k]: (e.target as HTMLInputElement).value });
  return (
    <Dialog title={kind === "upload" ? "Upload ISO image" : "Download ISO image from URL"} onClose={onClose}>
      {kind === "upload" ? (
        <Field label="File"><input name="file" type="file" accept=".iso,.img" onChange={(e) => setFile((e.target as HTMLInputElement).files?.[0] ?? null)} /></Field>
      ) : (
        <>
          <Field label="URL"><input name="url" value={form.url} onInput={set("url")} /></Field>
          <Field label="File name"><input name="filename" value={form.filename} onInput={set("filename")} /></Field>
        </>
      )}
      <Field label="Checksum algorithm">
        <select name="algorithm" value={form.algorithm} onChange={set("algorithm")}>
          <option value="">none</option>
          {["sha224", "sha256", "sha384", "sha512"].map((a) => <option value={a}>{a}</option>)}
        </select>
      </Field>
      {form.algorithm && <Field label="Checksum"><input name="checksum" value={form.checksum} onInput={set("checksum")} /></Field>}
      <ErrorText error={action.error} />
      <button class="primary" disabled={action.busy || (kind === "upload" && !file)} onClick={submit}>{kind === "upload" ? "Upload" : "Download"}</button>
    </Dialog>
  );
}
