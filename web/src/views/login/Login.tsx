// Login: user, password and realm, as Proxmox VE's login window asks for them.
import { useEffect, useState } from "preact/hooks";
import { ApiError, get, login } from "../../api";
import { ErrorText, Field } from "../../components/ui";

export function Login() {
  const [username, setUsername] = useState("root");
  const [password, setPassword] = useState("");
  const [realm, setRealm] = useState("pam");
  const [realms, setRealms] = useState<{ realm: string; comment?: string }[]>([]);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    get("/access/domains").then(setRealms).catch(() => setRealms([{ realm: "pam" }, { realm: "pve" }]));
  }, []);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await login(username, password, realm);
    } catch (err) {
      const msg = err instanceof ApiError ? err.message : String(err);
      setError(msg === "authentication failure" || (err as ApiError).status === 401 ? "Login failed: wrong user name or password." : msg);
    } finally {
      setBusy(false);
    }
  };
  return (
    <div class="login-backdrop">
      <form class="login" onSubmit={submit} aria-label="Login">
        <h1>Ferrox</h1>
        <Field label="User name"><input name="username" autocomplete="username" value={username} onInput={(e) => setUsername((e.target as HTMLInputElement).value)} required /></Field>
        <Field label="Password"><input name="password" type="password" autocomplete="current-password" value={password} onInput={(e) => setPassword((e.target as HTMLInputElement).value)} required /></Field>
        <Field label="Realm">
          <select name="realm" value={realm} onChange={(e) => setRealm((e.target as HTMLSelectElement).value)}>
            {realms.map((r) => <option value={r.realm}>{r.comment ? `${r.comment} (${r.realm})` : r.realm}</option>)}
          </select>
        </Field>
        <ErrorText error={error} />
        <button type="submit" class="primary" disabled={busy}>{busy ? "Logging in…" : "Login"}</button>
      </form>
    </div>
  );
}
