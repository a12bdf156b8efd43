// Tasks: the cluster-wide list (bottom panel and Datacenter/Node tabs) and the log viewer,
// which follows a running task and can stop it.
import { useEffect, useRef, useState } from "preact/hooks";
import { del, get } from "../../api";
import { Dialog, ErrorText } from "../../components/ui";
import { usePoll } from "../../lib/hooks";
import { taskTitle, time } from "../../lib/format";

let opener: ((upid: string) => void) | null = null;

/** Shows a task's log (e.g. right after an action started it). */
export function openTask(upid: string) {
  opener?.(upid);
}

export function TaskList({ path, limit = 50 }: { path: string; limit?: number }) {
  // /cluster/tasks takes no parameters; a node's task list takes `limit`.
  const tasks = usePoll<any[]>(path, 3000, path.startsWith("/nodes/") ? { limit } : undefined);
  return (
    <div class="tasks">
      <ErrorText error={tasks.error} />
      <table class="grid task-list" aria-label="Tasks">
        <thead><tr><th>Start</th><th>End</th><th>Node</th><th>User</th><th>Description</th><th>Status</th></tr></thead>
        <tbody>
          {(tasks.data ?? []).slice(0, limit).map((t) => (
            <tr class={t.status === "running" || !t.endtime ? "running" : t.status && t.status !== "OK" && t.status !== "stopped" ? "failed" : ""} onClick={() => openTask(t.upid)}>
              <td>{time(t.starttime)}</td>
              <td>{time(t.endtime)}</td>
              <td>{t.node}</td>
              <td>{t.user}</td>
              <td>{taskTitle(t.type, t.id)}</td>
              <td>{t.endtime ? t.status ?? t.exitstatus : "running"}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export function TaskViewer() {
  const [upid, setUpid] = useState<string | null>(null);
  useEffect(() => {
    opener = setUpid;
    return () => void (opener = null);
  }, []);
  if (!upid) return null;
  return <TaskLog upid={upid} onClose={() => setUpid(null)} />;
}

function TaskLog({ upid, onClose }: { upid: string; onClose: () => void }) {
  const node = upid.split(":")[1];
  const base = `/nodes/${node}/tasks/${encodeURIComponent(upid)}`;
  const [lines, setLines] = useState<string[]>([]);
  const [status, setStatus] = useState<any>(null);
  const [error, setError] = useState<string | null>(null);
  const pre = useRef<HTMLPreElement>(null);
  useEffect(() => {
    let stopped = false;
    let timer: number;
    const poll = async () => {
      try {
        const [log, st] = await Promise.all([get<any[]>(`${base}/log`, { start: 0, limit: 5000 }), get(`${base}/status`)]);
        if (stopped) return;
        setLines(log.map((l) => l.t));
        setStatus(st);
        if (st.status === "running") timer = window.setTimeout(poll, 1000);
      } catch (e) {
        if (!stopped) setError(String((e as Error).message));
      }
    };
    poll();
    return () => {
      stopped = true;
      window.clearTimeout(timer);
    };
  }, [upid]);
  useEffect(() => {
    if (pre.current) pre.current.scrollTop = pre.current.scrollHeight;
  }, [lines]);
  return (
    <Dialog title={`Task viewer: ${status ? taskTitle(status.type, status.id) : upid}`} onClose={onClose}>
      <div class="toolbar">
        <span data-testid="task-status">Status: {status ? (status.status === "running" ? "running" : status.exitstatus) : "…"}</span>
        {status?.status === "running" && <button onClick={() => del(base).catch((e) => setError(e.message))}>Stop</button>}
      </div>
      <ErrorText error={error} />
      <pre class="task-log" ref={pre}>{lines.join("\n")}</pre>
    </Dialog>
  );
}
