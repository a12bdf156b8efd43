// Guest: summary with status and RRD graphs, hardware (with the config digest, so a
// concurrent edit is refused, not lost), options, consoles, snapshots, backups; power actions,
// migrate, delete.
import { useState } from "preact/hooks";
import { del, get, post, put } from "../../api";
import { Dialog, ErrorText, Field, Gauge, KeyValues, Tabs } from "../../components/ui";
import { RrdCharts, ChartSpec } from "../../components/RrdCharts";
import { useAction, usePoll } from "../../lib/hooks";
import { bytes, duration } from "../../lib/format";
import { Resource } from "../../lib/tree";
import { openTask } from "../tasks/Tasks";
import { SerialConsole, VncConsole } from "./Console";
import { Snapshots } from "./Snapshots";
import { Backups } from "./Backups";

const GUEST_CHARTS: ChartSpec[] = [
  { title: "CPU usage", unit: "percent", series: [{ field: "cpu", label: "CPU" }] },
  { title: "Memory usage", unit: "bytes", series: [{ field: "maxmem", label: "Total" }, { field: "mem", label: "Used" }] },
  { title: "Network traffic", unit: "bytes/s", series: [{ field: "netin", label: "In" }, { field: "netout", label: "Out" }] },
  { title: "Disk IO", unit: "bytes/s", series: [{ field: "diskread", label: "Read" }, { field: "diskwrite", label: "Write" }] },
  { title: "Pressure", unit: "percent", series: [{ field: "pressurecpusome", label: "CPU some" }, { field: "pressureiosome", label: "IO some" }, { field: "pressurememorysome", label: "memory some" }] },
];

export function GuestView({ node, vmid, tab, resources }: { node: string; vmid: number; tab: string; resources: Resource[] }) {
  const base = `/nodes/${node}/qemu/${vmid}`;
  const status = usePoll<any>(`${base}/status/current`, 3000);
  const config = usePoll<any>(`${base}/config`, 10000);
  const action = useAction();
  const [dialog, setDialog] = useState<"migrate" | "delete" | null>(null);
  const row = resources.find((r) => r.type === "qemu" && r.vmid === vmid);
  const s = status.data;
  const running = s?.status === "running";
  const cfg = config.data ?? {};
  const serials = Object.keys(cfg).filter((k) => /^serial[0-3]$/.test(k) && cfg[k] === "socket");
  const tabs: [string, string][] = [["summary", "Summary"], ["console", "Console"], ...serials.map((k) => [k, `Serial (${k})`] as [string, string]), ["hardware", "Hardware"], ["options", "Options"], ["snapshot", "Snapshots"], ["backup", "Backup"]];
  const power = (what: string) => action.run(async () => {
    const upid = await post<string>(`${base}/status/${what}`);
    openTask(upid);
    status.reload();
  });
  if (row && row.node !== node) {
    // The guest moved (migration): follow it.
    location.hash = `#/node/${row.node}/qemu/${vmid}/${tab}`;
  }
  return (
    <section class="view">
      <h1>Virtual Machine {vmid} {cfg.name ? `(${cfg.name})` : ""} on node '{node}'</h1>
      <div class="toolbar power">
        <button disabled={running} onClick={() => power("start")}>Start</button>
        <button disabled={!running} onClick={() => power("shutdown")}>Shutdown</button>
        <button disabled={!running} onClick={() => power("stop")}>Stop</button>
        <button disabled={!running} onClick={() => power("reboot")}>Reboot</button>
        <button disabled={!running || s?.qmpstatus === "paused"} onClick={() => power("suspend")}>Suspend</button>
        <button disabled={s?.qmpstatus !== "paused"} onClick={() => power("resume")}>Resume</button>
        <button onClick={() => setDialog("migrate")}>Migrate</button>
        <button class="danger" onClick={() => setDialog("delete")}>Remove</button>
      </div>
      <ErrorText error={action.error || status.error} />
      <Tabs tabs={tabs} current={tab} href={(t) => `#/node/${node}/qemu/${vmid}/${t}`} />
      {tab === "summary" && s && (
        <div>
          <div class="panel-grid">
            <div class="panel">
              <KeyValues rows={[
                ["Status", <span data-testid="guest-status">{s.status}{s.qmpstatus && s.qmpstatus !== s.status ? ` (${s.qmpstatus})` : ""}</span>],
                ["HA state", s.ha?.managed ? s.ha.state : "none"],
                ["Node", node],
                ["Uptime", duration(s.uptime)],
              ]} />
            </div>
            <div class="panel">
              <Gauge label="CPU" used={s.cpu ?? 0} total={1} text={`${((s.cpu ?? 0) * 100).toFixed(1)} % of ${s.cpus} CPU(s)`} />
              <Gauge label="Memory" used={s.mem ?? 0} total={s.maxmem || 1} text={`${bytes(s.mem)} of ${bytes(s.maxmem)}`} />
              <div>Boot disk: {bytes(s.maxdisk)}</div>
            </div>
          </div>
          <RrdCharts path={`${base}/rrddata`} charts={GUEST_CHARTS} />
        </div>
      )}
      {tab === "console" && (running ? <VncConsole node={node} vmid={vmid} /> : <p>The VM is not running.</p>)}
      {serials.includes(tab) && (running ? <SerialConsole node={node} vmid={vmid} serial={tab} /> : <p>The VM is not running.</p>)}
      {tab === "hardware" && <Hardware base={base} config={config} />}
      {tab === "options" && <Options base={base} config={config} />}
      {tab === "snapshot" && <Snapshots base={base} running={running} />}
      {tab === "backup" && <Backups node={node} vmid={vmid} running={running} />}
      {dialog === "migrate" && <MigrateDialog node={node} vmid={vmid} onClose={() => setDialog(null)} />}
      {dialog === "delete" && <DeleteDialog node={node} vmid={vmid} onClose={() => setDialog(null)} />}
    </section>
  );
}

const HARDWARE_KEY = /^(cores|sockets|memory|cpu|vga|balloon|scsihw|(scsi|virtio|sata|ide|net|serial|unused)\d+)$/;

function Hardware({ base, config }: { base: string; config: { data: any; reload: () => void } }) {
  const [edit, setEdit] = useState<{ key: string; value: string; digest: string; create: boolean } | null>(null);
  const [resizing, setResizing] = useState<{ disk: string; digest: string } | null>(null);
  const action = useAction();
  const cfg = config.data ?? {};
  const isImage = (k: string) => /^(scsi|virtio|sata|ide)\d+$/.test(k) && !/media=cdrom/.test(String(cfg[k])) && !String(cfg[k]).startsWith("none");
  const keys = Object.keys(cfg).filter((k) => HARDWARE_KEY.test(k)).sort();
  const nextKey = (prefix: string) => {
    for (let i = 0; i < 31; i++) if (!(`${prefix}${i}` in cfg)) return `${prefix}${i}`;
    return `${prefix}0`;
  };
  const remove = (key: string) =>
    confirm(`Remove ${key}?`) &&
    action.run(() => put(`${base}/config`, { delete: key, digest: cfg.digest })).then(config.reload);
  return (
    <div>
      <div class="toolbar">
        <button onClick={() => setEdit({ key: nextKey("scsi"), value: "local:4", digest: cfg.digest, create: true })}>Add: Hard disk</button>
        <button onClick={() => setEdit({ key: nextKey("net"), value: "virtio,bridge=vmbr0", digest: cfg.digest, create: true })}>Add: Network device</button>
        <button onClick={() => setEdit({ key: nextKey("serial"), value: "socket", digest: cfg.digest, create: true })}>Add: Serial port</button>
      </div>
      <ErrorText error={action.error} />
      <table class="grid" aria-label="Hardware">
        <thead><tr><th>Device</th><th>Value</th><th /></tr></thead>
        <tbody>
          {keys.map((k) => (
            <tr data-key={k}>
              <td>{k}</td>
              <td class="mono">{String(cfg[k])}</td>
              <td>
                <button onClick={() => setEdit({ key: k, value: String(cfg[k]), digest: cfg.digest, create: false })}>Edit</button>
                {isImage(k) && <button onClick={() => setResizing({ disk: k, digest: cfg.digest })}>Resize</button>}
                {!/^(cores|sockets|memory)$/.test(k) && <button onClick={() => remove(k)}>Remove</button>}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {edit && <ConfigDialog base={base} edit={edit} onClose={() => setEdit(null)} onSaved={() => { setEdit(null); config.reload(); }} />}
      {resizing && <ResizeDialog base={base} {...resizing} onClose={() => { setResizing(null); config.reload(); }} />}
    </div>
  );
}

function ResizeDialog({ base, disk, digest, onClose }: { base: string; disk: string; digest: string; onClose: () => void }) {
  const [grow, setGrow] = useState("1");
  const action = useAction();
  const resize = async () => {
    const upid = await action.run(() => put<string>(`${base}/resize`, { disk, size: `+${grow}G`, digest }));
    if (upid) {
      openTask(upid);
      onClose();
    }
  };
  return (
    <Dialog title={`Resize: ${disk}`} onClose={onClose}>
      <Field label="Grow by (GiB)"><input name="grow" type="number" min="0" step="1" value={grow} onInput={(e) => setGrow((e.target as HTMLInputElement).value)} /></Field>
      <ErrorText error={action.error} />
      <button class="primary" disabled={action.busy} onClick={resize}>Resize disk</button>
    </Dialog>
  );
}

function ConfigDialog({ base, edit, onClose, onSaved }: { base: string; edit: { key: string; value: string; digest: string; create: boolean }; onClose: () => void; onSaved: () => void }) {
  const [key, setKey] = useState(edit.key);
  const [value, setValue] = useState(edit.value);
  const action = useAction();
  const save = async () => {
    // The digest of the config this dialog was opened on: a change made meanwhile by
    // someone else makes the server refuse this one.
    const ok = await action.run(() => put(`${base}/config`, { [key]: value, digest: edit.digest }));
    if (ok !== undefined) onSaved();
  };
  return (
    <Dialog title={edit.create ? `Add: ${key}` : `Edit: ${key}`} onClose={onClose}>
      {edit.create && <Field label="Key"><input name="key" value={key} onInput={(e) => setKey((e.target as HTMLInputElement).value)} /></Field>}
      <Field label="Value"><input name="value" class="mono" value={value} onInput={(e) => setValue((e.target as HTMLInputElement).value)} /></Field>
      <ErrorText error={action.error} />
      <button class="primary" disabled={action.busy} onClick={save}>OK</button>
    </Dialog>
  );
}

const OPTION_KEYS = ["name", "onboot", "boot", "ostype", "tablet", "protection", "tags", "description", "agent", "startup"];

function Options({ base, config }: { base: string; config: { data: any; reload: () => void } }) {
  const [edit, setEdit] = useState<{ key: string; value: string; digest: string; create: boolean } | null>(null);
  const cfg = config.data ?? {};
  return (
    <div>
      <table class="grid" aria-label="Options">
        <tbody>
          {OPTION_KEYS.map((k) => (
            <tr>
              <th>{k}</th>
              <td class="mono">{cfg[k] === undefined ? "(default)" : String(cfg[k])}</td>
              <td><button onClick={() => setEdit({ key: k, value: cfg[k] === undefined ? "" : String(cfg[k]), digest: cfg.digest, create: false })}>Edit</button></td>
            </tr>
          ))}
        </tbody>
      </table>
      {edit && <ConfigDialog base={base} edit={edit} onClose={() => setEdit(null)} onSaved={() => { setEdit(null); config.reload(); }} />}
    </div>
  );
}

function MigrateDialog({ node, vmid, onClose }: { node: string; vmid: number; onClose: () => void }) {
  const pre = usePoll<any>(`/nodes/${node}/qemu/${vmid}/migrate`, 0);
  const [target, setTarget] = useState("");
  const action = useAction();
  const p = pre.data;
  const migrate = async () => {
    const upid = await action.run(() => post<string>(`/nodes/${node}/qemu/${vmid}/migrate`, { target, online: p?.running ? 1 : 0 }));
    if (upid) {
      openTask(upid);
      onClose();
    }
  };
  return (
    <Dialog title={`Migrate VM ${vmid}`} onClose={onClose}>
      <ErrorText error={pre.error} />
      {p && (
        <>
          <p>Mode: {p.running ? "online (live)" : "offline"}</p>
          <Field label="Target node">
            <select name="target" value={target} onChange={(e) => setTarget((e.target as HTMLSelectElement).value)}>
              <option value="">(choose)</option>
              {p.allowed_nodes.map((n: string) => <option value={n}>{n}</option>)}
            </select>
          </Field>
          {Object.keys(p.not_allowed_nodes).length > 0 && (
            <table class="grid" aria-label="Refused targets">
              <thead><tr><th>Node</th><th>Refused because</th></tr></thead>
              <tbody>
                {Object.entries(p.not_allowed_nodes).map(([n, why]: [string, any]) => (
                  <tr><td>{n}</td><td>{why.reason}{why["missing-cpu-flags"]?.length ? `: lacks ${why["missing-cpu-flags"].join(", ")}` : ""}</td></tr>
                ))}
              </tbody>
            </table>
          )}
          {p.local_disks?.length > 0 && <p>Local disks: {p.local_disks.map((d: any) => d.volid).join(", ")}</p>}
        </>
      )}
      <ErrorText error={action.error} />
      <button class="primary" disabled={!target || action.busy} onClick={migrate}>Migrate</button>
    </Dialog>
  );
}

function DeleteDialog({ node, vmid, onClose }: { node: string; vmid: number; onClose: () => void }) {
  const [typed, setTyped] = useState("");
  const [purge, setPurge] = useState(true);
  const action = useAction();
  const remove = async () => {
    const upid = await action.run(() => del<string>(`/nodes/${node}/qemu/${vmid}`, { purge: purge ? 1 : 0 }));
    if (upid) {
      openTask(upid);
      onClose();
      location.hash = `#/node/${node}`;
    }
  };
  return (
    <Dialog title={`Remove VM ${vmid}`} onClose={onClose}>
      <p>The VM and its disks are destroyed. Type the VM id to confirm.</p>
      <Field label="VM id"><input name="confirm-vmid" value={typed} onInput={(e) => setTyped((e.target as HTMLInputElement).value)} /></Field>
      <Field label="Purge from jobs and HA"><input type="checkbox" checked={purge} onChange={(e) => setPurge((e.target as HTMLInputElement).checked)} /></Field>
      <ErrorText error={action.error} />
      <button class="danger" disabled={typed !== String(vmid) || action.busy} onClick={remove}>Remove</button>
    </Dialog>
  );
}

export async function nextId(): Promise<number> {
  return Number(await get("/cluster/nextid"));
}
