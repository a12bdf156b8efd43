// Backups of a guest: its archives on every storage that holds backups, back up now
// (storage, mode, notes, protection), restore an archive over the guest (stopped) or to a
// new id, protect or unprotect one, remove one.
import { useEffect, useState } from "preact/hooks";
import { del, get, post, put } from "../../api";
import { Dialog, ErrorText, Field } from "../../components/ui";
import { useAction } from "../../lib/hooks";
import { bytes } from "../../lib/format";
import { openTask } from "../tasks/Tasks";

interface Archive {
  volid: string;
  ctime: number;
  size: number;
  storage: string;
  notes?: string;
  protected: boolean;
}

export function Backups({ node, vmid, running }: { node: string; vmid: number; running: boolean }) {
  const [archives, setArchives] = useState<Archive[] | null>(null);
  const [storages, setStorages] = useState<string[]>([]);
  const [error, setError] = useState<string | null>(null);
  const [tick, setTick] = useState(0);
  const [dialog, setDialog] = useState<{ kind: "backup" } | { kind: "restore"; archive: Archive } | null>(null);
  useEffect(() => {
    let stopped = false;
    (async () => {
      try {
        const list = await get<any[]>(`/nodes/${node}/storage`, { content: "backup" });
        const ids = list.map((s) => s.storage as string);
        const found: Archive[] = [];
        for (const s of ids) {
          const content = await get<any[]>(`/nodes/${node}/storage/${s}/content`, { content: "backup", vmid });
          found.push(...content.map((c) => ({ volid: c.volid, ctime: c.ctime, size: c.size, storage: s, notes: c.notes, protected: c.protected === 1 })));
        }
        found.sort((a, b) => b.ctime - a.ctime);
        if (!stopped) {
          setStorages(ids);
          setArchives(found);
          setError(null);
        }
      } catch (e) {
        if (!stopped) setError(String(e));
      }
    })();
    return () => void (stopped = true);
  }, [node, vmid, tick]);
  const reload = () => setTick((t) => t + 1);
  const action = useAction();
  const volumePath = (a: Archive) => `/nodes/${node}/storage/${a.storage}/content/${encodeURIComponent(a.volid)}`;
  const protect = (a: Archive) => action.run(async () => {
    await put(volumePath(a), { protected: a.protected ? 0 : 1 });
    reload();
  });
  const remove = (a: Archive) => {
    if (!confirm(`Remove ${a.volid}?`)) return;
    action.run(async () => {
      openTask(await del<string>(volumePath(a)));
      reload();
    });
  };
  return (
    <div>
      <div class="toolbar">
        <button disabled={storages.length === 0} onClick={() => setDialog({ kind: "backup" })}>Backup now</button>
      </div>
      <ErrorText error={error || action.error} />
      {storages.length === 0 && archives && <p>No storage here holds backups (content 'backup').</p>}
      <table class="grid" aria-label="Backups">
        <thead><tr><th>Date</th><th>Archive</th><th>Notes</th><th>Size</th><th>Protected</th><th /></tr></thead>
        <tbody>
          {(archives ?? []).map((a) => (
            <tr data-archive={a.volid}>
              <td>{new Date(a.ctime * 1000).toLocaleString()}</td>
              <td class="mono">{a.volid}</td>
              <td class="notes">{a.notes ?? ""}</td>
              <td>{bytes(a.size)}</td>
              <td class="protected">{a.protected ? "yes" : "no"}</td>
              <td class="actions">
                <button onClick={() => setDialog({ kind: "restore", archive: a })}>Restore</button>
                <button disabled={action.busy} onClick={() => protect(a)}>{a.protected ? "Unprotect" : "Protect"}</button>
                <button disabled={action.busy || a.protected} title={a.protected ? "a protected backup is not removed" : ""} onClick={() => remove(a)}>Remove</button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {dialog?.kind === "backup" && <BackupDialog node={node} vmid={vmid} storages={storages} onClose={() => { setDialog(null); reload(); }} />}
      {dialog?.kind === "restore" && <RestoreDialog node={node} vmid={vmid} running={running} archive={dialog.archive} onClose={() => { setDialog(null); reload(); }} />}
    </div>
  );
}

function BackupDialog({ node, vmid, storages, onClose }: { node: string; vmid: number; storages: string[]; onClose: () => void }) {
  const [storage, setStorage] = useState(storages[0] ?? "");
  const [mode, setMode] = useState("snapshot");
  const [notes, setNotes] = useState("{{guestname}}");
  const [protect, setProtect] = useState(false);
  const action = useAction();
  const run = async () => {
    const upid = await action.run(() =>
      post<string>(`/nodes/${node}/vzdump`, { vmid, storage, mode, "notes-template": notes, protected: protect ? 1 : undefined }),
    );
    if (upid) {
      openTask(upid);
      onClose();
    }
  };
  return (
    <Dialog title={`Backup VM ${vmid}`} onClose={onClose}>
      <Field label="Storage">
        <select name="storage" value={storage} onChange={(e) => setStorage((e.target as HTMLSelectElement).value)}>
          {storages.map((s) => <option value={s}>{s}</option>)}
        </select>
      </Field>
      <Field label="Mode">
        <select name="mode" value={mode} onChange={(e) => setMode((e.target as HTMLSelectElement).value)}>
          <option value="snapshot">Snapshot (the VM runs on)</option>
          <option value="suspend">Suspend</option>
          <option value="stop">Stop</option>
        </select>
      </Field>
      <Field label="Notes"><input name="notes-template" value={notes} onInput={(e) => setNotes((e.target as HTMLInputElement).value)} /></Field>
      <Field label="Protected"><input name="protected" type="checkbox" checked={protect} onChange={(e) => setProtect((e.target as HTMLInputElement).checked)} /></Field>
      <ErrorText error={action.error} />
      <button class="primary" disabled={!storage || action.busy} onClick={run}>Backup</button>
    </Dialog>
  );
}

function RestoreDialog({ node, vmid, running, archive, onClose }: { node: string; vmid: number; running: boolean; archive: Archive; onClose: () => void }) {
  const [target, setTarget] = useState(String(vmid));
  const [unique, setUnique] = useState(false);
  const action = useAction();
  const same = target === String(vmid);
  const restore = async () => {
    const upid = await action.run(() =>
      post<string>(`/nodes/${node}/qemu`, { vmid: Number(target), archive: archive.volid, force: same ? 1 : 0, unique: unique ? 1 : 0 }),
    );
    if (upid) {
      openTask(upid);
      onClose();
    }
  };
  return (
    <Dialog title="Restore" onClose={onClose}>
      <p class="mono">{archive.volid}</p>
      <Field label="VM id"><input name="target-vmid" value={target} onInput={(e) => setTarget((e.target as HTMLInputElement).value)} /></Field>
      <Field label="New MAC addresses"><input name="unique" type="checkbox" checked={unique} onChange={(e) => setUnique((e.target as HTMLInputElement).checked)} /></Field>
      {same && <p>This replaces VM {vmid}: its disks are overwritten{running ? " (shut it down first)" : ""}.</p>}
      <ErrorText error={action.error} />
      <button class="primary" disabled={action.busy || !/^\d+$/.test(target)} onClick={restore}>Restore</button>
    </Dialog>
  );
}
