// The resource tree: Datacenter → nodes → guests and storages, and pools, built from
// /cluster/resources rows; flattened into visible rows for a virtualized list. Pure.

export interface Resource {
  id: string;
  type: string;
  node?: string;
  status?: string;
  vmid?: number;
  name?: string;
  template?: number;
  hastate?: string;
  lock?: string;
  storage?: string;
  pool?: string;
  cpu?: number;
  maxcpu?: number;
  mem?: number;
  maxmem?: number;
  disk?: number;
  maxdisk?: number;
  uptime?: number;
  tags?: string;
}

export interface TreeRow {
  /** Route of the view this row opens. */
  key: string;
  depth: number;
  label: string;
  /** What the icon shows: node-online, node-offline, vm-running, vm-stopped, storage, pool, datacenter. */
  icon: string;
  /** Extra state badges: ha, locked, migrating. */
  badges: string[];
  expandable: boolean;
  expanded: boolean;
  resource?: Resource;
}

export function guestLabel(r: Resource): string {
  return `${r.vmid}${r.name ? ` (${r.name})` : ""}`;
}

function guestRow(r: Resource, depth: number): TreeRow {
  const badges: string[] = [];
  if (r.hastate) badges.push("ha");
  if (r.lock) badges.push(r.lock === "migrate" ? "migrating" : "locked");
  return {
    key: `node/${r.node}/qemu/${r.vmid}`,
    depth,
    label: guestLabel(r),
    icon: r.template ? "template" : r.status === "running" ? "vm-running" : r.status === "stopped" ? "vm-stopped" : "vm-unknown",
    badges,
    expandable: false,
    expanded: false,
    resource: r,
  };
}

function matches(r: Resource, search: string): boolean {
  if (!search) return true;
  const s = search.toLowerCase();
  return [r.name, r.vmid?.toString(), r.node, r.storage, r.pool, r.tags, r.status]
    .some((v) => v !== undefined && v.toLowerCase().includes(s));
}

/**
 * The visible rows: `collapsed` holds the keys of collapsed rows; a search shows every
 * matching guest or storage under its node, whatever is collapsed.
 */
export function buildTree(resources: Resource[], collapsed: Set<string>, search = ""): TreeRow[] {
  const rows: TreeRow[] = [];
  const dcCollapsed = collapsed.has("datacenter") && !search;
  rows.push({ key: "datacenter", depth: 0, label: "Datacenter", icon: "datacenter", badges: [], expandable: true, expanded: !dcCollapsed });
  if (dcCollapsed) return rows;
  const nodes = resources.filter((r) => r.type === "node").sort((a, b) => (a.node ?? "").localeCompare(b.node ?? ""));
  const byNode = new Map<string, Resource[]>();
  for (const r of resources) {
    if (r.type === "node" || r.type === "pool" || !r.node) continue;
    if (!matches(r, search)) continue;
    let list = byNode.get(r.node);
    if (!list) byNode.set(r.node, (list = []));
    list.push(r);
  }
  for (const n of nodes) {
    const key = `node/${n.node}`;
    const children = byNode.get(n.node!) ?? [];
    if (search && children.length === 0 && !matches(n, search)) continue;
    const open = search ? true : !collapsed.has(key);
    rows.push({
      key,
      depth: 1,
      label: n.node!,
      icon: n.status === "online" ? "node-online" : "node-offline",
      badges: n.hastate === "maintenance" ? ["maintenance"] : [],
      expandable: children.length > 0,
      expanded: open,
      resource: n,
    });
    if (!open) continue;
    const guests = children.filter((r) => r.type === "qemu" || r.type === "lxc").sort((a, b) => (a.vmid ?? 0) - (b.vmid ?? 0));
    for (const g of guests) rows.push(guestRow(g, 2));
    const storages = children.filter((r) => r.type === "storage").sort((a, b) => (a.storage ?? "").localeCompare(b.storage ?? ""));
    for (const s of storages) {
      rows.push({
        key: `node/${s.node}/storage/${s.storage}`,
        depth: 2,
        label: `${s.storage} (${s.node})`,
        icon: "storage",
        badges: [],
        expandable: false,
        expanded: false,
        resource: s,
      });
    }
  }
  const pools = resources.filter((r) => r.type === "pool").filter((r) => matches(r, search));
  for (const p of pools) {
    rows.push({ key: `pool/${p.pool}`, depth: 1, label: p.pool!, icon: "pool", badges: [], expandable: false, expanded: false, resource: p });
  }
  return rows;
}

/** The rows a window of `height` pixels shows at `scrollTop`, with some overscan. */
export function visibleWindow(total: number, rowHeight: number, scrollTop: number, height: number, overscan = 10) {
  const first = Math.max(0, Math.floor(scrollTop / rowHeight) - overscan);
  const last = Math.min(total, Math.ceil((scrollTop + height) / rowHeight) + overscan);
  return { first, last, offset: first * rowHeight, totalHeight: total * rowHeight };
}
