// Balancing plan preview (Ferrox): the plan the CRS would carry out now, as a before and
// after picture of the node loads, and Apply, which runs it as live migrations in one task.
import { post } from "../../api";
import { ErrorText } from "../../components/ui";
import { useAction, usePoll } from "../../lib/hooks";
import { bytes } from "../../lib/format";
import { openTask } from "../tasks/Tasks";

function Bar({ value, kind }: { value: number; kind: string }) {
  return (
    <div class={`load-bar ${kind}`} title={`${(value * 100).toFixed(1)} %`}>
      <div class={`load-fill ${value > 1 ? "over" : ""}`} style={{ width: `${Math.min(100, value * 100)}%` }} />
      <span>{(value * 100).toFixed(0)} %</span>
    </div>
  );
}

export function PlanView() {
  const plan = usePoll<any>("/cluster/crs/plan", 10000);
  const action = useAction();
  const apply = async () => {
    const upid = await action.run(() => post<string>("/cluster/crs/plan", { digest: plan.data.digest }));
    if (upid) openTask(upid);
    plan.reload();
  };
  const p = plan.data;
  const moves = p ? p.steps.flatMap((s: any, i: number) => s.moves.map((m: any) => ({ ...m, step: i + 1 }))) : [];
  return (
    <div class="plan">
      <div class="toolbar">
        <button onClick={plan.reload}>Refresh</button>
        <button class="primary" disabled={!p || moves.length === 0 || action.busy} onClick={apply}>Apply plan</button>
      </div>
      <ErrorText error={plan.error || action.error} />
      {p && (
        <>
          <p class="plan-summary">
            Mode <b>{p.mode}</b>: imbalance <b data-testid="imbalance-before">{p.imbalance_before.toFixed(3)}</b> → <b data-testid="imbalance-after">{p.imbalance_after.toFixed(3)}</b>,{" "}
            {moves.length === 0 ? <span data-testid="plan-reason">nothing to move: {p.reason}</span> : <span>{moves.length} migration{moves.length > 1 ? "s" : ""} in {p.steps.length} step{p.steps.length > 1 ? "s" : ""} ({p.reason})</span>}
          </p>
          <table class="grid plan-nodes" aria-label="Node loads">
            <thead><tr><th>Node</th><th>CPU before</th><th>CPU after</th><th>Memory before</th><th>Memory after</th></tr></thead>
            <tbody>
              {p.nodes.map((n: any) => (
                <tr>
                  <td>{n.name}</td>
                  <td><Bar value={n.cpu_before} kind="cpu" /></td>
                  <td><Bar value={n.cpu_after} kind="cpu" /></td>
                  <td><Bar value={n.memory_before} kind="mem" /></td>
                  <td><Bar value={n.memory_after} kind="mem" /></td>
                </tr>
              ))}
            </tbody>
          </table>
          {moves.length > 0 && (
            <table class="grid" aria-label="Planned migrations">
              <thead><tr><th>Step</th><th>Guest</th><th>From</th><th>To</th><th>Memory</th><th>Imbalance after</th></tr></thead>
              <tbody>{moves.map((m: any) => <tr><td>{m.step}</td><td>{m.sid}</td><td>{m.from}</td><td>{m.to}</td><td>{bytes(m.memory)}</td><td>{m.imbalance_after.toFixed(3)}</td></tr>)}</tbody>
            </table>
          )}
        </>
      )}
    </div>
  );
}
