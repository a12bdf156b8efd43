// The resource tree: virtualized (only the rows in view are in the DOM, so 10 000
// guests scroll smoothly), keyboard-navigable (arrows, Home/End, Enter, left/right to
// collapse/expand), with a search box.
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { buildTree, Resource, TreeRow, visibleWindow } from "../lib/tree";
import { hrefOf } from "../lib/route";

const ROW_HEIGHT = 26;

const ICONS: Record<string, string> = {
  datacenter: "▦",
  "node-online": "●",
  "node-offline": "✕",
  "vm-running": "▶",
  "vm-stopped": "■",
  "vm-unknown": "?",
  template: "▤",
  storage: "⛁",
  pool: "◇",
};

export function Tree({ resources, selected }: { resources: Resource[]; selected: string }) {
  const [collapsed, setCollapsed] = useState<Set<string>>(new Set());
  const [search, setSearch] = useState("");
  const [scrollTop, setScrollTop] = useState(0);
  const [height, setHeight] = useState(600);
  const box = useRef<HTMLDivElement>(null);
  const rows = useMemo(() => buildTree(resources, collapsed, search), [resources, collapsed, search]);
  const win = visibleWindow(rows.length, ROW_HEIGHT, scrollTop, height);

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const ro = new ResizeObserver(() => setHeight(el.clientHeight));
    ro.observe(el);
    return () => ro.disconnect();
  }, []);

  const toggle = (row: TreeRow) => {
    const next = new Set(collapsed);
    if (next.has(row.key)) next.delete(row.key);
    else next.add(row.key);
    setCollapsed(next);
  };

  const select = (index: number) => {
    const row = rows[Math.max(0, Math.min(rows.length - 1, index))];
    if (!row) return;
    location.hash = hrefOf(row.key);
    const el = box.current;
    if (el) {
      const top = rows.indexOf(row) * ROW_HEIGHT;
      if (top < el.scrollTop) el.scrollTop = top;
      else if (top + ROW_HEIGHT > el.scrollTop + el.clientHeight) el.scrollTop = top + ROW_HEIGHT - el.clientHeight;
    }
  };

  const onKey = (e: KeyboardEvent) => {
    const i = rows.findIndex((r) => r.key === selected);
    const row = rows[i];
    const page = Math.max(1, Math.floor(height / ROW_HEIGHT) - 1);
    const moves: Record<string, () => void> = {
      ArrowDown: () => select(i + 1),
      ArrowUp: () => select(i - 1),
      PageDown: () => select(i + page),
      PageUp: () => select(i - page),
      Home: () => select(0),
      End: () => select(rows.length - 1),
      ArrowRight: () => row?.expandable && !row.expanded && toggle(row),
      ArrowLeft: () => {
        if (row?.expandable && row.expanded) toggle(row);
        else {
          // To the parent.
          for (let j = i - 1; j >= 0; j--) if (rows[j].depth < (row?.depth ?? 0)) return select(j);
        }
      },
    };
    const f = moves[e.key];
    if (f) {
      e.preventDefault();
      f();
    }
  };

  return (
    <aside class="tree-panel">
      <input class="tree-search" type="search" placeholder="Search" aria-label="Search" value={search} onInput={(e) => setSearch((e.target as HTMLInputElement).value)} />
      <div class="tree" role="tree" tabIndex={0} ref={box} onKeyDown={onKey} onScroll={(e) => setScrollTop((e.target as HTMLDivElement).scrollTop)}>
        <div style={{ height: `${win.totalHeight}px`, position: "relative" }}>
          <div style={{ transform: `translateY(${win.offset}px)` }}>
            {rows.slice(win.first, win.last).map((row) => (
              <div
                role="treeitem"
                aria-selected={row.key === selected}
                aria-expanded={row.expandable ? row.expanded : undefined}
                data-key={row.key}
                class={`tree-row ${row.key === selected ? "selected" : ""} icon-${row.icon}`}
                style={{ height: `${ROW_HEIGHT}px`, paddingLeft: `${row.depth * 16 + 4}px` }}
                onClick={() => (location.hash = hrefOf(row.key))}
              >
                <span class="twisty" onClick={(e) => { e.stopPropagation(); row.expandable && toggle(row); }}>
                  {row.expandable ? (row.expanded ? "▾" : "▸") : ""}
                </span>
                <span class={`icon ${row.icon}`} aria-hidden="true">{ICONS[row.icon] ?? "•"}</span>
                <span class="label">{row.label}</span>
                {row.badges.map((b) => <span class={`badge badge-${b}`}>{b}</span>)}
              </div>
            ))}
          </div>
        </div>
      </div>
    </aside>
  );
}
