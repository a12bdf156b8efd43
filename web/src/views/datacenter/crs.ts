// The CRS settings of /cluster/options as the form edits them. Pure.

/** The CRS settings as one `crs` property string, as /cluster/options takes them. */
export function crsString(v: Record<string, string>): string {
  const parts = [`ha=${v.ha || "basic"}`];
  for (const k of ["ha-rebalance-on-start", "ha-auto-rebalance", "ha-auto-rebalance-threshold", "ha-auto-rebalance-method", "ha-auto-rebalance-hold-duration", "ha-auto-rebalance-margin", "balance", "balance-threshold", "balance-interval"]) {
    if (v[k] !== undefined && v[k] !== "") parts.push(`${k}=${v[k]}`);
  }
  return parts.join(",");
}
