// The selection in the URL (`#/node/n1/qemu/100/console`), so that a reload or a shared
// link opens the same view. Pure parsing; the app listens to hashchange.

export interface Route {
  /** datacenter | node | guest | storage | pool */
  kind: string;
  node?: string;
  vmid?: number;
  storage?: string;
  pool?: string;
  /** The tab within the view. */
  tab: string;
}

export function parseRoute(hash: string): Route {
  const parts = hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  if (parts[0] === "node" && parts[1]) {
    if (parts[2] === "qemu" && parts[3] && /^\d+$/.test(parts[3])) {
      return { kind: "guest", node: parts[1], vmid: Number(parts[3]), tab: parts[4] ?? "summary" };
    }
    if (parts[2] === "storage" && parts[3]) {
      return { kind: "storage", node: parts[1], storage: parts[3], tab: parts[4] ?? "content" };
    }
    return { kind: "node", node: parts[1], tab: parts[2] ?? "summary" };
  }
  if (parts[0] === "pool" && parts[1]) return { kind: "pool", pool: parts[1], tab: "members" };
  return { kind: "datacenter", tab: parts[1] ?? (parts[0] === "datacenter" ? "summary" : "summary") };
}

/** The tree key of a route (what is selected in the tree). */
export function routeKey(r: Route): string {
  switch (r.kind) {
    case "guest":
      return `node/${r.node}/qemu/${r.vmid}`;
    case "node":
      return `node/${r.node}`;
    case "storage":
      return `node/${r.node}/storage/${r.storage}`;
    case "pool":
      return `pool/${r.pool}`;
    default:
      return "datacenter";
  }
}

export function hrefOf(key: string, tab?: string): string {
  return `#/${key}${tab ? `/${tab}` : ""}`;
}
