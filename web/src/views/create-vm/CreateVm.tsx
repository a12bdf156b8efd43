// Create-VM wizard: general (node, id, name), CPU, memory, disk, network, confirm; the
// new guest's task opens when it is submitted.
import { useEffect, useState } from "preact/hooks";
import { get, post } from "../../api";
import { Dialog, ErrorText, Field, KeyValues } from "../../components/ui";
import { useAction } from "../../lib/hooks";
import { Resource } from "../../lib/tree";
import { openTask } from "../tasks/Tasks";

const STEPS = ["General", "CPU", "Memory", "Disk", "Network", "Confirm"];

export function CreateVm({ resources, onClose }: { resources: Resource[]; onClose: () => void }) {
  const nodes = resources.filter((r) => r.type === "node" && r.status === "online").map((r) => r.node!);
  const [step, setStep] = useState(0);
  const [v, setV] = useState({ node: nodes[0] ?? "", vmid: "", name: "", cores: "1", sockets: "1", cpu: "", memory: "512", storage: "", size: "4", bridge: "vmbr0", model: "virtio", start: false });
  const [storages, setStorages] = useState<any[]>([]);
  const action = useAction();
  useEffect(() => {
    get("/cluster/nextid").then((id) => setV((x) => ({ ...x, vmid: x.vmid || String(id) }))).catch(() => {});
  }, []);
  useEffect(() => {
    if (!v.node) return;
    get<any[]>(`/nodes/${v.node}/storage`, { content: "images" })
      .then((list) => {
        setStorages(list);
        setV((x) => ({ ...x, storage: list.some((s) => s.storage === x.storage) ? x.storage : list[0]?.storage ?? "" }));
      })
      .catch(() => setStorages([]));
  }, [v.node]);
  const set = (k: string) => (e: Event) => {
    const t = e.target as HTMLInputElement;
    setV({ ...v, [k]: t.type === "checkbox" ? t.checked : t.value });
  };
  const params = () => ({
    vmid: v.vmid,
    name: v.name || undefined,
    cores: v.cores,
    sockets: v.sockets,
    cpu: v.cpu || undefined,
    memory: v.memory,
    scsi0: v.storage ? `${v.storage}:${v.size}` : undefined,
    net0: v.bridge ? `${v.model},bridge=${v.bridge}` : undefined,
    start: v.start,
  });
  const create = async () => {
    const upid = await action.run(() => post<string>(`/nodes/${v.node}/qemu`, params()));
    if (upid) {
      openTask(upid);
      onClose();
      location.hash = `#/node/${v.node}/qemu/${v.vmid}`;
    }
  };
  return (
    <Dialog title="Create: Virtual Machine" onClose={onClose}>
      <ol class="wizard-steps">{STEPS.map((s, i) => <li class={i === step ? "active" : i < step ? "done" : ""}>{s}</li>)}</ol>
      {step === 0 && (
        <>
          <Field label="Node"><select name="node" value={v.node} onChange={set("node")}>{nodes.map((n) => <option value={n}>{n}</option>)}</select></Field>
          <Field label="VM ID"><input name="vmid" value={v.vmid} onInput={set("vmid")} /></Field>
          <Field label="Name"><input name="name" value={v.name} onInput={set("name")} /></Field>
        </>
      )}
      {step === 1 && (
        <>
          <Field label="Sockets"><input name="sockets" type="number" min="1" value={v.sockets} onInput={set("sockets")} /></Field>
          <Field label="Cores"><input name="cores" type="number" min="1" value={v.cores} onInput={set("cores")} /></Field>
          <Field label="Type (empty: the cluster's default)"><input name="cpu" placeholder="x86-64-v2-AES" value={v.cpu} onInput={set("cpu")} /></Field>
        </>
      )}
      {step === 2 && <Field label="Memory (MiB)"><input name="memory" type="number" min="16" value={v.memory} onInput={set("memory")} /></Field>}
      {step === 3 && (
        <>
          <Field label="Storage">
            <select name="storage" value={v.storage} onChange={set("storage")}>
              <option value="">(no disk)</option>
              {storages.map((s) => <option value={s.storage}>{s.storage} ({s.type})</option>)}
            </select>
          </Field>
          <Field label="Disk size (GiB)"><input name="size" type="number" min="1" value={v.size} onInput={set("size")} /></Field>
        </>
      )}
      {step === 4 && (
        <>
          <Field label="Bridge (empty: no network)"><input name="bridge" value={v.bridge} onInput={set("bridge")} /></Field>
          <Field label="Model"><select name="model" value={v.model} onChange={set("model")}>{["virtio", "e1000", "e1000e", "rtl8139", "vmxnet3"].map((m) => <option value={m}>{m}</option>)}</select></Field>
        </>
      )}
      {step === 5 && (
        <>
          <KeyValues rows={Object.entries(params()).filter(([, x]) => x !== undefined).map(([k, x]) => [k, String(x)])} />
          <Field label="Start after created"><input name="start" type="checkbox" checked={v.start} onChange={set("start")} /></Field>
        </>
      )}
      <ErrorText error={action.error} />
      <div class="wizard-buttons">
        <button disabled={step === 0} onClick={() => setStep(step - 1)}>Back</button>
        {step < STEPS.length - 1 ? <button class="primary" onClick={() => setStep(step + 1)}>Next</button> : <button class="primary" disabled={action.busy} onClick={create}>Finish</button>}
      </div>
    </Dialog>
  );
}
