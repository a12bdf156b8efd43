// The application shell: login gate, header, resource tree, the selected view (from the
// URL), and the task panel at the bottom.
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import "./style.css";
import { currentSession, logout, onSession, Session } from "./api";
import { Tree } from "./components/Tree";
import { usePoll } from "./lib/hooks";
import { parseRoute, routeKey } from "./lib/route";
import { Resource } from "./lib/tree";
import { Login } from "./views/login/Login";
import { Datacenter } from "./views/datacenter/Datacenter";
import { NodeView, StorageView } from "./views/node/Node";
import { GuestView } from "./views/guest/Guest";
import { CreateVm } from "./views/create-vm/CreateVm";
import { TaskList, TaskViewer } from "./views/tasks/Tasks";

function useHash() {
  const [hash, setHash] = useState(location.hash);
  useEffect(() => {
    const on = () => setHash(location.hash);
    window.addEventListener("hashchange", on);
    return () => window.removeEventListener("hashchange", on);
  }, []);
  return hash;
}

function useTheme(): [string, () => void] {
  const [theme, setTheme] = useState(localStorage.getItem("ferrox-theme") ?? (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light"));
  useEffect(() => {
    document.documentElement.dataset.theme = theme;
    localStorage.setItem("ferrox-theme", theme);
  }, [theme]);
  return [theme, () => setTheme(theme === "dark" ? "light" : "dark")];
}

function Shell({ session }: { session: Session }) {
  const route = parseRoute(useHash());
  const [theme, toggleTheme] = useTheme();
  const [creating, setCreating] = useState(false);
  const [tasksOpen, setTasksOpen] = useState(true);
  const res = usePoll<Resource[]>("/cluster/resources", 2000);
  const resources = res.data ?? [];
  return (
    <div class={`shell ${tasksOpen ? "tasks-open" : ""}`}>
      <header class="topbar">
        <span class="brand">Ferrox</span>
        <span class="spacer" />
        <button class="primary" onClick={() => setCreating(true)}>Create VM</button>
        <button onClick={toggleTheme} aria-label="Toggle theme">{theme === "dark" ? "Light" : "Dark"} theme</button>
        <span class="user" data-testid="user">{session.username}</span>
        <button onClick={logout}>Logout</button>
      </header>
      <Tree resources={resources} selected={routeKey(route)} />
      <main class="content">
        {res.error && !res.data && <pre class="error">{res.error}</pre>}
        {route.kind === "datacenter" && <Datacenter tab={route.tab} resources={resources} />}
        {route.kind === "node" && <NodeView node={route.node!} tab={route.tab} resources={resources} />}
        {route.kind === "storage" && <StorageView node={route.node!} storage={route.storage!} />}
        {route.kind === "guest" && <GuestView node={route.node!} vmid={route.vmid!} tab={route.tab} resources={resources} />}
        {route.kind === "pool" && <section class="view"><h1>Pool '{route.pool}'</h1></section>}
      </main>
      <footer class="task-panel">
        <div class="task-panel-head">
          <button onClick={() => setTasksOpen(!tasksOpen)} aria-expanded={tasksOpen}>Tasks {tasksOpen ? "▾" : "▴"}</button>
        </div>
        {tasksOpen && <TaskList path="/cluster/tasks" limit={30} />}
      </footer>
      {creating && <CreateVm resources={resources} onClose={() => setCreating(false)} />}
      <TaskViewer />
    </div>
  );
}

function App() {
  const [session, setSession] = useState(currentSession());
  useEffect(() => onSession(setSession), []);
  return session ? <Shell session={session} /> : <Login />;
}

render(<App />, document.getElementById("app")!);
