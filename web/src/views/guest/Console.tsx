// Consoles: noVNC through vncproxy + vncwebsocket, and xterm.js through termproxy (Proxmox
// VE's framing: `0:<len>:<data>` input, `1:<cols>:<rows>:` resize, `2` ping). Both go
// through the node the browser talks to, which relays to the guest's node.
import RFB from "@novnc/novnc";
import { Terminal } from "@xterm/xterm";
import "@xterm/xterm/css/xterm.css";
import { useEffect, useRef, useState } from "preact/hooks";
import { ApiError, post } from "../../api";
import { ErrorText } from "../../components/ui";

function socketUrl(node: string, vmid: number, port: number, ticket: string): string {
  const q = new URLSearchParams({ port: String(port), vncticket: ticket });
  return `wss://${location.host}/api2/json/nodes/${encodeURIComponent(node)}/qemu/${vmid}/vncwebsocket?${q}`;
}

export function VncConsole({ node, vmid }: { node: string; vmid: number }) {
  const screen = useRef<HTMLDivElement>(null);
  const [state, setState] = useState("connecting");
  const [error, setError] = useState<string | null>(null);
  const [attempt, setAttempt] = useState(0);
  useEffect(() => {
    let rfb: any = null;
    let closed = false;
    (async () => {
      try {
        const t = await post(`/nodes/${node}/qemu/${vmid}/vncproxy`, { websocket: 1 });
        if (closed || !screen.current) return;
        rfb = new RFB(screen.current, socketUrl(node, vmid, t.port, t.ticket), {
          credentials: { password: t.ticket },
          wsProtocols: ["binary"],
        });
        rfb.scaleViewport = true;
        rfb.addEventListener("connect", () => setState("connected"));
        rfb.addEventListener("disconnect", (e: any) => setState(e.detail?.clean ? "disconnected" : "connection lost"));
        rfb.addEventListener("securityfailure", (e: any) => setError(`VNC authentication failed: ${e.detail?.reason ?? ""}`));
      } catch (e) {
        setError(e instanceof ApiError ? e.full() : String(e));
        setState("failed");
      }
    })();
    return () => {
      closed = true;
      rfb?.disconnect();
    };
  }, [node, vmid, attempt]);
  return (
    <div class="console">
      <div class="toolbar">
        <span data-testid="console-state">{state}</span>
        <button onClick={() => { setError(null); setState("connecting"); setAttempt((a) => a + 1); }}>Reconnect</button>
      </div>
      <ErrorText error={error} />
      <div class="vnc-screen" ref={screen} data-testid="vnc-screen" />
    </div>
  );
}

export function SerialConsole({ node, vmid, serial }: { node: string; vmid: number; serial: string }) {
  const box = useRef<HTMLDivElement>(null);
  const [state, setState] = useState("connecting");
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    const term = new Terminal({ convertEol: false, cursorBlink: true, fontSize: 14 });
    let ws: WebSocket | null = null;
    let ping: number | undefined;
    let closed = false;
    if (box.current) term.open(box.current);
    const encoder = new TextEncoder();
    (async () => {
      try {
        const t = await post(`/nodes/${node}/qemu/${vmid}/termproxy`, { serial });
        if (closed) return;
        ws = new WebSocket(socketUrl(node, vmid, t.port, t.ticket), "binary");
        ws.binaryType = "arraybuffer";
        let loggedIn = false;
        ws.onopen = () => ws!.send(`${t.user}:${t.ticket}\n`);
        ws.onmessage = (e) => {
          if (!loggedIn) {
            const text = typeof e.data === "string" ? e.data : new TextDecoder().decode(e.data);
            if (text.startsWith("OK")) {
              loggedIn = true;
              setState("connected");
              ws!.send(`1:${term.cols}:${term.rows}:`);
              ping = window.setInterval(() => ws?.readyState === WebSocket.OPEN && ws.send("2"), 30000);
              return;
            }
          }
          term.write(typeof e.data === "string" ? e.data : new Uint8Array(e.data));
        };
        ws.onclose = () => setState("disconnected");
        term.onData((d) => ws?.readyState === WebSocket.OPEN && loggedIn && ws.send(`0:${encoder.encode(d).length}:${d}`));
        term.onResize(({ cols, rows }) => ws?.readyState === WebSocket.OPEN && ws.send(`1:${cols}:${rows}:`));
        term.focus();
      } catch (e) {
        setError(e instanceof ApiError ? e.full() : String(e));
        setState("failed");
      }
    })();
    return () => {
      closed = true;
      window.clearInterval(ping);
      ws?.close();
      term.dispose();
    };
  }, [node, vmid, serial]);
  return (
    <div class="console">
      <div class="toolbar"><span data-testid="console-state">{state}</span></div>
      <ErrorText error={error} />
      <div class="xterm-box" ref={box} data-testid="serial-terminal" />
    </div>
  );
}
