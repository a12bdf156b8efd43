// The snapshots of a guest as Proxmox VE's snapshot tree shows them: each under its
// parent, oldest first, and "current" (the guest now) under the snapshot it builds on.

export interface SnapshotRow {
  name: string;
  description?: string;
  parent?: string;
  snaptime?: number;
  vmstate?: number;
  snapstate?: string;
  running?: number;
}

export interface SnapshotLine {
  row: SnapshotRow;
  depth: number;
}

/** Depth-first from the roots (snapshots without a known parent), children by time. */
export function snapshotTree(rows: SnapshotRow[]): SnapshotLine[] {
  const names = new Set(rows.map((r) => r.name));
  const children = new Map<string, SnapshotRow[]>();
  const roots: SnapshotRow[] = [];
  for (const r of rows) {
    if (r.parent && names.has(r.parent) && r.parent !== r.name) {
      const list = children.get(r.parent) ?? [];
      list.push(r);
      children.set(r.parent, list);
    } else {
      roots.push(r);
    }
  }
  // "current" last among its siblings; snapshots by creation time.
  const order = (a: SnapshotRow, b: SnapshotRow) =>
    (a.name === "current" ? 1 : 0) - (b.name === "current" ? 1 : 0) || (a.snaptime ?? 0) - (b.snaptime ?? 0) || a.name.localeCompare(b.name);
  const out: SnapshotLine[] = [];
  const seen = new Set<string>();
  const walk = (r: SnapshotRow, depth: number) => {
    if (seen.has(r.name)) return;
    seen.add(r.name);
    out.push({ row: r, depth });
    for (const c of (children.get(r.name) ?? []).sort(order)) walk(c, depth + 1);
  };
  for (const r of roots.sort(order)) walk(r, 0);
  return out;
}
