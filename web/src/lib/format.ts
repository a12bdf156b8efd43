// Numbers as people read them; pure functions, unit-tested.

export function bytes(n: number | undefined | null): string {
  if (n === undefined || n === null || !isFinite(n)) return "-";
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0;
  let v = n;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}

export function percent(fraction: number | undefined | null): string {
  if (fraction === undefined || fraction === null || !isFinite(fraction)) return "-";
  return `${(fraction * 100).toFixed(1)} %`;
}

export function duration(seconds: number | undefined | null): string {
  if (!seconds || seconds < 0) return "-";
  const d = Math.floor(seconds / 86400);
  const h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = Math.floor(seconds % 60);
  const hms = [h, m, s].map((x) => String(x).padStart(2, "0")).join(":");
  return d > 0 ? `${d} day${d > 1 ? "s" : ""} ${hms}` : hms;
}

export function time(unix: number | undefined | null): string {
  if (!unix) return "-";
  const d = new Date(unix * 1000);
  const p = (x: number) => String(x).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** Parses a size as Proxmox VE writes it (`32G`, `512M`, bytes without a unit). */
export function parseSize(text: string): number | null {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*$/i.exec(text);
  if (!m) return null;
  const mult: Record<string, number> = { "": 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 };
  return Math.round(parseFloat(m[1]) * mult[m[2].toUpperCase()]);
}

/** A task's description from its UPID, as Proxmox VE's task list shows it. */
export function taskTitle(type: string, id: string): string {
  const names: Record<string, string> = {
    qmstart: "Start",
    qmstop: "Stop",
    qmshutdown: "Shutdown",
    qmreboot: "Reboot",
    qmsuspend: "Suspend",
    qmresume: "Resume",
    qmcreate: "Create",
    qmdestroy: "Destroy",
    qmmigrate: "Migrate",
    qmigrate: "Migrate",
    qmsnapshot: "Snapshot",
    qmrollback: "Rollback",
    qmdelsnapshot: "Delete Snapshot",
    qmclone: "Clone",
    qmtemplate: "Convert to template",
    qmmove: "Move disk",
    resize: "Resize",
    vzdump: "Backup",
    qmrestore: "Restore",
    qmconfig: "Configure",
    hamigrate: "HA Migrate",
    harelocate: "HA Relocate",
    vncproxy: "Console",
    vncshell: "Serial console",
    crsplan: "Balancing plan",
  };
  // Tasks on a storage name the storage, not a guest.
  const storageTasks: Record<string, string> = { download: "Download", imgcopy: "Upload" };
  if (storageTasks[type]) return id ? `Storage ${id} - ${storageTasks[type]}` : storageTasks[type];
  const what = names[type] ?? type;
  return id ? `VM/CT ${id} - ${what}` : what;
}
