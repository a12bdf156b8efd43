// Fence incidents from the HA history (GET /cluster/ha/history): a node the master lost,
// when it fenced it, and each of its services from its fence to running elsewhere.

export interface HistoryEntry {
  time: number;
  type: "node" | "service";
  id: string;
  from: string;
  to: string;
  node?: string;
}

export interface Step {
  time: number;
  what: string;
}

export interface Incident {
  node: string;
  /** When the master noticed the node gone (its state left 'online'): its LRM status had
   * been stale for three rounds by then, so the node died a few seconds earlier. */
  lost: number;
  steps: Step[];
  /** Services recovered: sid -> seconds from `lost` to 'started' on the new node. */
  recovered: Record<string, { node: string; after: number }>;
  /** Whether the node was fenced (its agent lock taken), not just briefly unknown. */
  fenced: boolean;
  /** Set once the node is back online. */
  back?: number;
}

export function incidents(history: HistoryEntry[]): Incident[] {
  const out: Incident[] = [];
  const open = new Map<string, Incident>();
  // Services being recovered, by sid -> the incident of their fenced node.
  const recovering = new Map<string, Incident>();
  for (const e of history) {
    if (e.type === "node") {
      let incident = open.get(e.id);
      if (!incident && e.from === "online" && e.to === "unknown") {
        incident = { node: e.id, lost: e.time, steps: [], recovered: {}, fenced: false };
        open.set(e.id, incident);
        out.push(incident);
        incident.steps.push({ time: e.time, what: `master lost contact with ${e.id} (online → unknown)` });
        continue;
      }
      if (!incident) continue;
      if (e.to === "fence") incident.steps.push({ time: e.time, what: `fencing node ${e.id}` });
      else if (e.from === "fence" && e.to === "unknown") {
        incident.fenced = true;
        incident.steps.push({ time: e.time, what: `node ${e.id} fenced (agent lock taken)` });
      } else if (e.to === "online") {
        incident.back = e.time;
        incident.steps.push({ time: e.time, what: `node ${e.id} back online` });
        open.delete(e.id);
      }
      continue;
    }
    if (e.to === "fence" && e.node && open.has(e.node)) {
      const incident = open.get(e.node)!;
      recovering.set(e.id, incident);
      incident.steps.push({ time: e.time, what: `${e.id} to be recovered` });
      continue;
    }
    const incident = recovering.get(e.id);
    if (!incident) continue;
    if (e.to === "recovery") {
      incident.steps.push({ time: e.time, what: `${e.id} recovering` });
    } else if (e.to === "started" && e.node) {
      incident.steps.push({ time: e.time, what: `${e.id} to start on ${e.node}` });
      incident.recovered[e.id] = { node: e.node, after: e.time - incident.lost };
      recovering.delete(e.id);
    } else if (e.to === "error" || e.to === "stopped" || e.to === "freeze") {
      incident.steps.push({ time: e.time, what: `${e.id} ${e.to}` });
      recovering.delete(e.id);
    }
  }
  return out;
}
