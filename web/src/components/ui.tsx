// Small building blocks shared by the views.
import { ComponentChildren } from "preact";
import { useEffect, useRef } from "preact/hooks";
import { percent } from "../lib/format";

export function ErrorText({ error }: { error: string | null | undefined }) {
  if (!error) return null;
  return <pre class="error" role="alert">{error}</pre>;
}

export function Gauge({ label, used, total, text }: { label: string; used: number; total: number; text?: string }) {
  const f = total > 0 ? used / total : 0;
  return (
    <div class="gauge" title={label}>
      <div class="gauge-label">{label}</div>
      <div class="gauge-bar"><div class={`gauge-fill ${f > 0.9 ? "hot" : f > 0.7 ? "warm" : ""}`} style={{ width: `${Math.min(100, f * 100)}%` }} /></div>
      <div class="gauge-text">{text ?? percent(f)}</div>
    </div>
  );
}

export function Tabs({ tabs, current, href }: { tabs: [string, string][]; current: string; href: (tab: string) => string }) {
  return (
    <nav class="tabs" role="tablist">
      {tabs.map(([id, label]) => (
        <a role="tab" aria-selected={id === current} class={id === current ? "tab active" : "tab"} href={href(id)}>{label}</a>
      ))}
    </nav>
  );
}

export function Dialog({ title, onClose, children }: { title: string; onClose: () => void; children: ComponentChildren }) {
  const ref = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => e.key === "Escape" && onClose();
    window.addEventListener("keydown", onKey);
    ref.current?.querySelector<HTMLElement>("input,select,button")?.focus();
    return () => window.removeEventListener("keydown", onKey);
  }, []);
  return (
    <div class="dialog-backdrop" onClick={(e) => e.target === e.currentTarget && onClose()}>
      <div class="dialog" role="dialog" aria-label={title} ref={ref}>
        <header><h2>{title}</h2><button class="close" aria-label="Close" onClick={onClose}>×</button></header>
        <div class="dialog-body">{children}</div>
      </div>
    </div>
  );
}

export function Field({ label, children, error }: { label: string; children: ComponentChildren; error?: string }) {
  return (
    <label class="field">
      <span>{label}</span>
      {children}
      {error && <small class="field-error">{error}</small>}
    </label>
  );
}

export function KeyValues({ rows }: { rows: [string, ComponentChildren][] }) {
  return (
    <table class="kv">
      <tbody>{rows.map(([k, v]) => <tr><th>{k}</th><td>{v}</td></tr>)}</tbody>
    </table>
  );
}
