// Backup jobs (`/cluster/backup`): the list with each job's next run, add one (the
// server checks the schedule and names what it refuses), enable/disable, remove.
import { useState } from "preact/hooks";
import { del, post, put } from "../../api";
import { Dialog, ErrorText, Field } from "../../components/ui";
import { useAction, usePoll } from "../../lib/hooks";

export function BackupJobs() {
  const list = usePoll<any[]>("/cluster/backup", 5000);
  const action = useAction();
  const [adding, setAdding] = useState(false);
  const change = (f: () => Promise<unknown>) => action.run(f).then(list.reload);
  return (
    <div>
      <div class="toolbar"><button onClick={() => setAdding(true)}>Add backup job</button></div>
      <ErrorText error={action.error || list.error} />
      <table class="grid" aria-label="Backup jobs">
        <thead><tr><th>ID</th><th>Enabled</th><th>Schedule</th><th>Next run</th><th>Storage</th><th>Guests</th><th>Mode</th><th>Retention</th><th /></tr></thead>
        <tbody>
          {(list.data ?? []).map((j) => (
            <tr data-job={j.id}>
              <td>{j.id}</td>
              <td>{j.enabled === "0" ? "no" : "yes"}</td>
              <td class="mono">{j.schedule}</td>
              <td>{j["next-run"] ? new Date(j["next-run"] * 1000).toLocaleString() : ""}</td>
              <td>{j.storage}</td>
              <td>{j.all === "1" ? "all" : j.vmid}</td>
              <td>{j.mode}</td>
              <td class="mono">{j["prune-backups"] ?? ""}</td>
              <td>
                <button onClick={() => change(() => put(`/cluster/backup/${j.id}`, { enabled: j.enabled === "0" ? 1 : 0 }))}>
                  {j.enabled === "0" ? "Enable" : "Disable"}
                </button>
                <button class="danger" onClick={() => confirm(`Remove backup job '${j.id}'?`) && change(() => del(`/cluster/backup/${j.id}`))}>Remove</button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {adding && <AddJob onClose={() => { setAdding(false); list.reload(); }} />}
    </div>
  );
}

function AddJob({ onClose }: { onClose: () => void }) {
  const [form, setForm] = useState({ schedule: "21:00", storage: "local", vmid: "", mode: "snapshot", prune: "keep-last=3" });
  const action = useAction();
  const set = (k: keyof typeof form) => (e: Event) => setForm({ ...form, [k]: (e.target as HTMLInputElement).value });
  const add = async () => {
    const params: Record<string, string | number> = { schedule: form.schedule, storage: form.storage, mode: form.mode };
    if (form.vmid.trim() === "") params.all = 1;
    else params.vmid = form.vmid.trim();
    if (form.prune.trim()) params["prune-backups"] = form.prune.trim();
    const ok = await action.run(() => post("/cluster/backup", params));
    if (ok !== undefined) onClose();
  };
  return (
    <Dialog title="Add backup job" onClose={onClose}>
      <Field label="Schedule"><input name="schedule" class="mono" value={form.schedule} onInput={set("schedule")} /></Field>
      <Field label="Storage"><input name="storage" value={form.storage} onInput={set("storage")} /></Field>
      <Field label="Guests (empty: all)"><input name="vmid" value={form.vmid} onInput={set("vmid")} /></Field>
      <Field label="Mode">
        <select name="mode" value={form.mode} onChange={set("mode")}>
          <option value="snapshot">Snapshot</option>
          <option value="suspend">Suspend</option>
          <option value="stop">Stop</option>
        </select>
      </Field>
      <Field label="Retention"><input name="prune-backups" class="mono" value={form.prune} onInput={set("prune")} /></Field>
      <ErrorText error={action.error} />
      <button class="primary" disabled={action.busy} onClick={add}>Add</button>
    </Dialog>
  );
}
