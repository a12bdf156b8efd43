// HA: status, resources and rules (add, edit, remove; the manager's refusal shown as
// text), node maintenance, disarm/arm, fence events with their recovery timelines and
// the manager's recent state changes.
import { useState } from "preact/hooks";
import { del, post, put } from "../../api";
import { Dialog, ErrorText, Field } from "../../components/ui";
import { useAction, usePoll } from "../../lib/hooks";
import { Resource } from "../../lib/tree";
import { HistoryEntry, Incident, incidents } from "../../lib/ha";

export function HaPanel({ resources }: { resources: Resource[] }) {
  const status = usePoll<any[]>("/cluster/ha/status/current", 3000);
  const res = usePoll<any[]>("/cluster/ha/resources", 5000);
  const rules = usePoll<any[]>("/cluster/ha/rules", 5000);
  const action = useAction();
  const [resEdit, setResEdit] = useState<any | null>(null);
  const [ruleEdit, setRuleEdit] = useState<any | null>(null);
  const fencing = status.data?.find((r) => r.type === "fencing");
  const armed = !fencing || fencing["armed-state"] === "armed" || fencing["armed-state"] === "standby";
  const nodes = resources.filter((r) => r.type === "node").map((r) => r.node!);
  const crm = (command: string) => action.run(() => post("/cluster/ha/crm-command", { command })).then(() => status.reload());
  const maintenance = (node: string) => (status.data ?? []).some((r) => r.type === "lrm" && r.node === node && /maintenance/.test(r.status ?? ""));

  return (
    <div>
      <h2>Status</h2>
      <div class="toolbar">
        {armed ? (
          <>
            <button onClick={() => crm("disarm-ha freeze")}>Disarm HA (freeze)</button>
            <button onClick={() => crm("disarm-ha ignore")}>Disarm HA (ignore)</button>
          </>
        ) : (
          <button onClick={() => crm("arm-ha")}>Arm HA</button>
        )}
      </div>
      <ErrorText error={status.error || action.error} />
      <table class="grid" aria-label="HA status">
        <thead><tr><th>Type</th><th>Status</th></tr></thead>
        <tbody>{(status.data ?? []).map((r) => <tr><td>{r.type}</td><td>{r.status}</td></tr>)}</tbody>
      </table>

      <h2>Node maintenance</h2>
      <table class="grid">
        <tbody>
          {nodes.map((n) => (
            <tr>
              <td>{n}</td>
              <td>
                {maintenance(n) ? (
                  <button onClick={() => crm(`node-maintenance disable ${n}`)}>Disable maintenance</button>
                ) : (
                  <button onClick={() => crm(`node-maintenance enable ${n}`)}>Enable maintenance</button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>

      <h2>Resources</h2>
      <div class="toolbar"><button onClick={() => setResEdit({ sid: "", state: "started", max_restart: 1, max_relocate: 1, failback: 1, comment: "", create: true })}>Add resource</button></div>
      <ErrorText error={res.error} />
      <table class="grid" aria-label="HA resources">
        <thead><tr><th>ID</th><th>State</th><th>Max. restart</th><th>Max. relocate</th><th>Failback</th><th>Comment</th><th /></tr></thead>
        <tbody>
          {(res.data ?? []).map((r) => (
            <tr>
              <td>{r.sid}</td><td>{r.state}</td><td>{r.max_restart}</td><td>{r.max_relocate}</td><td>{r.failback ? "yes" : "no"}</td><td>{r.comment}</td>
              <td>
                <button onClick={() => setResEdit({ ...r })}>Edit</button>
                <button onClick={() => confirm(`Remove ${r.sid} from HA?`) && action.run(() => del(`/cluster/ha/resources/${r.sid}`)).then(res.reload)}>Remove</button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>

      <h2>Rules</h2>
      <div class="toolbar">
        <button onClick={() => setRuleEdit({ type: "node-affinity", rule: "", resources: "", nodes: "", strict: false, create: true })}>Add node affinity rule</button>
        <button onClick={() => setRuleEdit({ type: "resource-affinity", rule: "", resources: "", affinity: "positive", create: true })}>Add resource affinity rule</button>
      </div>
      <ErrorText error={rules.error} />
      <table class="grid" aria-label="HA rules">
        <thead><tr><th>Rule</th><th>Type</th><th>Resources</th><th>Nodes / affinity</th><th>Enabled</th><th /></tr></thead>
        <tbody>
          {(rules.data ?? []).map((r) => (
            <tr>
              <td>{r.rule}</td><td>{r.type}</td><td>{r.resources}</td><td>{r.nodes ?? r.affinity}{r.strict ? " (strict)" : ""}</td><td>{r.disable ? "no" : "yes"}</td>
              <td>
                <button onClick={() => setRuleEdit({ ...r, strict: !!r.strict })}>Edit</button>
                <button onClick={() => confirm(`Remove rule ${r.rule}?`) && action.run(() => del(`/cluster/ha/rules/${r.rule}`)).then(rules.reload)}>Remove</button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <HaHistory />
      {resEdit && <ResourceDialog value={resEdit} onClose={() => setResEdit(null)} onSaved={() => { setResEdit(null); res.reload(); }} />}
      {ruleEdit && <RuleDialog value={ruleEdit} onClose={() => setRuleEdit(null)} onSaved={() => { setRuleEdit(null); rules.reload(); }} />}
    </div>
  );
}

function ResourceDialog({ value, onClose, onSaved }: { value: any; onClose: () => void; onSaved: () => void }) {
  const [v, setV] = useState(value);
  const action = useAction();
  const set = (k: string) => (e: Event) => setV({ ...v, [k]: (e.target as HTMLInputElement).value });
  const save = async () => {
    const params = { state: v.state, max_restart: v.max_restart, max_relocate: v.max_relocate, failback: v.failback, comment: v.comment, digest: v.digest };
    const ok = await action.run(() => (v.create ? post("/cluster/ha/resources", { sid: v.sid, ...params }) : put(`/cluster/ha/resources/${v.sid}`, params)));
    if (ok !== undefined) onSaved();
  };
  return (
    <Dialog title={v.create ? "Add: Resource" : `Edit: ${v.sid}`} onClose={onClose}>
      {v.create && <Field label="VM"><input name="sid" placeholder="vm:100" value={v.sid} onInput={set("sid")} /></Field>}
      <Field label="Request state">
        <select name="state" value={v.state} onChange={set("state")}>{["started", "stopped", "ignored", "disabled"].map((s) => <option value={s}>{s}</option>)}</select>
      </Field>
      <Field label="Max. restart"><input name="max_restart" type="number" min="0" value={v.max_restart} onInput={set("max_restart")} /></Field>
      <Field label="Max. relocate"><input name="max_relocate" type="number" min="0" value={v.max_relocate} onInput={set("max_relocate")} /></Field>
      <Field label="Failback"><input name="failback" type="checkbox" checked={!!Number(v.failback)} onChange={(e) => setV({ ...v, failback: (e.target as HTMLInputElement).checked ? 1 : 0 })} /></Field>
      <Field label="Comment"><input name="comment" value={v.comment ?? ""} onInput={set("comment")} /></Field>
      <ErrorText error={action.error} />
      <button class="primary" disabled={action.busy} onClick={save}>{v.create ? "Add" : "OK"}</button>
    </Dialog>
  );
}

function RuleDialog({ value, onClose, onSaved }: { value: any; onClose: () => void; onSaved: () => void }) {
  const [v, setV] = useState(value);
  const action = useAction();
  const set = (k: string) => (e: Event) => setV({ ...v, [k]: (e.target as HTMLInputElement).value });
  const save = async () => {
    const params: Record<string, any> = { resources: v.resources, comment: v.comment, digest: v.digest };
    if (v.type === "node-affinity") Object.assign(params, { nodes: v.nodes, strict: v.strict ? 1 : 0 });
    else params.affinity = v.affinity;
    const ok = await action.run(() => (v.create ? post("/cluster/ha/rules", { rule: v.rule, type: v.type, ...params }) : put(`/cluster/ha/rules/${v.rule}`, { type: v.type, ...params })));
    if (ok !== undefined) onSaved();
  };
  return (
    <Dialog title={v.create ? `Add: ${v.type} rule` : `Edit: ${v.rule}`} onClose={onClose}>
      {v.create && <Field label="Rule"><input name="rule" value={v.rule} onInput={set("rule")} /></Field>}
      <Field label="Resources"><input name="resources" placeholder="vm:100,vm:101" value={v.resources} onInput={set("resources")} /></Field>
      {v.type === "node-affinity" ? (
        <>
          <Field label="Nodes"><input name="nodes" placeholder="n1:2,n2:1" value={v.nodes ?? ""} onInput={set("nodes")} /></Field>
          <Field label="Strict"><input name="strict" type="checkbox" checked={v.strict} onChange={(e) => setV({ ...v, strict: (e.target as HTMLInputElement).checked })} /></Field>
        </>
      ) : (
        <Field label="Affinity">
          <select name="affinity" value={v.affinity} onChange={set("affinity")}><option value="positive">keep together</option><option value="negative">keep separate</option></select>
        </Field>
      )}
      <Field label="Comment"><input name="comment" value={v.comment ?? ""} onInput={set("comment")} /></Field>
      <ErrorText error={action.error} />
      <button class="primary" disabled={action.busy} onClick={save}>{v.create ? "Add" : "OK"}</button>
    </Dialog>
  );
}

const clock = (t: number) => new Date(t * 1000).toLocaleString();

/** Fence events (newest first), each with its recovery timeline, and the last changes. */
function HaHistory() {
  const history = usePoll<HistoryEntry[]>("/cluster/ha/history", 5000);
  const all = history.data ?? [];
  const list = incidents(all).reverse();
  return (
    <div>
      <h2>Fence events</h2>
      <ErrorText error={history.error} />
      {list.length === 0 && <p class="muted">No node was lost since the history began.</p>}
      {list.map((incident) => <IncidentView incident={incident} />)}
      <h2>Recent state changes</h2>
      <table class="grid" aria-label="HA state changes">
        <thead><tr><th>Time</th><th>Node / service</th><th>From</th><th>To</th><th>Node</th></tr></thead>
        <tbody>
          {all.slice(-30).reverse().map((e) => (
            <tr><td>{clock(e.time)}</td><td>{e.id}</td><td>{e.from}</td><td>{e.to}</td><td>{e.node ?? ""}</td></tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function IncidentView({ incident }: { incident: Incident }) {
  const recovered = Object.entries(incident.recovered);
  const summary = incident.fenced
    ? `fenced; ${recovered.length} service(s) recovered` +
      (recovered.length ? `, the last handed to its new node ${Math.max(...recovered.map(([, r]) => r.after))} s later` : "")
    : incident.back !== undefined ? `back after ${incident.back - incident.lost} s, not fenced` : "not fenced yet";
  return (
    <table class="grid" aria-label={`Fence of ${incident.node}`} data-incident={incident.node}>
      <caption>Master lost contact with node {incident.node} at {clock(incident.lost)}: {summary}</caption>
      <thead><tr><th>After that</th><th>Step</th></tr></thead>
      <tbody>
        {incident.steps.map((s) => <tr><td class="mono">+{s.time - incident.lost} s</td><td>{s.what}</td></tr>)}
      </tbody>
    </table>
  );
}
