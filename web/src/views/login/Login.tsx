// Login: user, password and realm, as Proxmox VE's login window asks for them.
import { useEffect, useState } from "preact/hooks";
import { ApiError, get, login, loginSecondFactor, SecondFactorNeeded } from "../../api";
import { ErrorText, Field } from "../../components/ui";

export function Login() {
  const [username, setUsername] = useState("root");
  const [password, setPassword] = useState("");
  const [realm, setRealm] = useState("pam");
  const [realms, setRealms] = useState<{ realm: string; comment?: string }[]>([]);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [second, setSecond] = useState<SecondFactorNeeded | null>(null);
  const [code, setCode] = useState("");
  const [kind, setKind] = useState("totp");
  useEffect(() => {
    get("/access/domains").then(setRealms).catch(() => setRealms([{ realm: "pam" }, { realm: "pve" }]));
  }, []);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      if (second) await loginSecondFactor(second.username, second.challenge, `${kind}:${code.trim()}`);
      else await login(username, password, realm);
    } catch (err) {
      if (err instanceof SecondFactorNeeded) {
        setSecond(err);
        return;
      }
      const msg = err instanceof ApiError ? err.message : String(err);
      const refused = (err as ApiError).status === 401;
      setError(refused ? (second ? "Login failed: wrong code." : "Login failed: wrong user name or password.") : msg);
    } finally {
      setBusy(false);
    }
  };
  return (
    <div class="login-backdrop">
      <form class="login" onSubmit={submit} aria-label="Login">
        <h1>Ferrox</h1>
        {second ? (
          <>
            <p>Second factor for {second.username}:</p>
            <Field label="Kind">
              <select name="tfa-kind" value={kind} onChange={(e) => setKind((e.target as HTMLSelectElement).value)}>
                <option value="totp">TOTP code</option>
                <option value="recovery">Recovery key</option>
              </select>
            </Field>
            <Field label="Code"><input name="tfa-code" autocomplete="one-time-code" value={code} onInput={(e) => setCode((e.target as HTMLInputElement).value)} required /></Field>
          </>
        ) : (<>
        <Field label="User name"><input name="username" autocomplete="username" value={username} onInput={(e) => setUsername((e.target as HTMLInputElement).value)} required /></Field>
        <Field label="Password"><input name="password" type="password" autocomplete="current-password" value={password} onInput={(e) => setPassword((e.target as HTMLInputElement).value)} required /></Field>
        <Field label="Realm">
          <select name="realm" value={realm} onChange={(e) => setRealm((e.target as HTMLSelectElement).value)}>
            {realms.map((r) => <option value={r.realm}>{r.comment ? `${r.comment} (${r.realm})` : r.realm}</option>)}
          </select>
        </Field>
        </>)}
        <ErrorText error={error} />
        <button type="submit" class="primary" disabled={busy}>{busy ? "Logging in…" : "Login"}</button>
      </form>
    </div>
  );
}
