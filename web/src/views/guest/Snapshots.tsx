// Snapshots of a guest: the tree of snapshots with "current" under the one it builds on;
// take one (with the RAM of a running guest), roll back, edit the description, delete.
import { useState } from "preact/hooks";
import { del, post, put } from "../../api";
import { Dialog, ErrorText, Field } from "../../components/ui";
import { useAction, usePoll } from "../../lib/hooks";
import { snapshotTree, SnapshotRow } from "../../lib/snapshots";
import { openTask } from "../tasks/Tasks";

export function Snapshots({ base, running }: { base: string; running: boolean }) {
  const list = usePoll<SnapshotRow[]>(`${base}/snapshot`, 5000);
  const action = useAction();
  const [dialog, setDialog] = useState<{ kind: "take" } | { kind: "edit"; row: SnapshotRow } | null>(null);
  const task = (f: () => Promise<string>) =>
    action.run(async () => {
      const upid = await f();
      openTask(upid);
      list.reload();
    });
  const lines = snapshotTree(list.data ?? []);
  return (
    <div>
      <div class="toolbar">
        <button onClick={() => setDialog({ kind: "take" })}>Take Snapshot</button>
      </div>
      <ErrorText error={action.error || list.error} />
      <table class="grid" aria-label="Snapshots">
        <thead><tr><th>Name</th><th>RAM</th><th>Date/Status</th><th>Description</th><th /></tr></thead>
        <tbody>
          {lines.map(({ row, depth }) => (
            <tr data-snapshot={row.name}>
              <td style={{ paddingLeft: `${0.5 + depth * 1.2}em` }}>{row.name === "current" ? "NOW" : row.name}</td>
              <td>{row.vmstate ? "yes" : ""}</td>
              <td>{row.name === "current" ? (row.running ? "running" : "stopped") : row.snapstate ?? (row.snaptime ? new Date(row.snaptime * 1000).toLocaleString() : "")}</td>
              <td class="description">{row.description}</td>
              <td>
                {row.name !== "current" && (
                  <>
                    <button
                      disabled={running && !row.vmstate}
                      title={running && !row.vmstate ? "a snapshot without RAM: shut the VM down first" : ""}
                      onClick={() => confirm(`Roll back to '${row.name}'? The current state is lost.`) && task(() => post<string>(`${base}/snapshot/${row.name}/rollback`))}
                    >Rollback</button>
                    <button onClick={() => setDialog({ kind: "edit", row })}>Edit</button>
                    <button class="danger" onClick={() => confirm(`Delete snapshot '${row.name}'?`) && task(() => del<string>(`${base}/snapshot/${row.name}`))}>Remove</button>
                  </>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {dialog?.kind === "take" && <TakeDialog base={base} running={running} onClose={() => { setDialog(null); list.reload(); }} />}
      {dialog?.kind === "edit" && <EditDialog base={base} row={dialog.row} onClose={() => { setDialog(null); list.reload(); }} />}
    </div>
  );
}

function TakeDialog({ base, running, onClose }: { base: string; running: boolean; onClose: () => void }) {
  const [name, setName] = useState("");
  const [description, setDescription] = useState("");
  const [vmstate, setVmstate] = useState(running);
  const action = useAction();
  const take = async () => {
    const upid = await action.run(() => post<string>(`${base}/snapshot`, { snapname: name, description, vmstate: vmstate ? 1 : 0 }));
    if (upid) {
      openTask(upid);
      onClose();
    }
  };
  return (
    <Dialog title="Take Snapshot" onClose={onClose}>
      <Field label="Name"><input name="snapname" value={name} onInput={(e) => setName((e.target as HTMLInputElement).value)} /></Field>
      {running && <Field label="Include RAM"><input name="vmstate" type="checkbox" checked={vmstate} onChange={(e) => setVmstate((e.target as HTMLInputElement).checked)} /></Field>}
      <Field label="Description"><textarea name="description" value={description} onInput={(e) => setDescription((e.target as HTMLTextAreaElement).value)} /></Field>
      <ErrorText error={action.error} />
      <button class="primary" disabled={!name || action.busy} onClick={take}>Take Snapshot</button>
    </Dialog>
  );
}

function EditDialog({ base, row, onClose }: { base: string; row: SnapshotRow; onClose: () => void }) {
  const [description, setDescription] = useState(row.description ?? "");
  const action = useAction();
  const save = async () => {
    const ok = await action.run(() => put(`${base}/snapshot/${row.name}/config`, { description }));
    if (ok !== undefined) onClose();
  };
  return (
    <Dialog title={`Edit: ${row.name}`} onClose={onClose}>
      <Field label="Description"><textarea name="description" value={description} onInput={(e) => setDescription((e.target as HTMLTextAreaElement).value)} /></Field>
      <ErrorText error={action.error} />
      <button class="primary" disabled={action.busy} onClick={save}>OK</button>
    </Dialog>
  );
}
