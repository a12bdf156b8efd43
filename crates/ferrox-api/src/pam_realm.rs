//! The `pam` realm: users of the host, checked by the host's PAM stack (service `ferrox`;
//! without `/etc/pam.d/ferrox` PAM uses its `other` service, which on Debian is the
//! common-auth/common-account stack). It needs the daemon to run as root, like Proxmox VE's.

use std::io::BufRead;

/// The PAM service name.
pub const SERVICE: &str = "ferrox";

/// Whether the host has an account `name` (a line of `/etc/passwd`).
pub fn host_has_user(name: &str) -> bool {
    let Ok(file) = std::fs::File::open("/etc/passwd") else {
        return false;
    };
    std::io::BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .any(|line| line.split(':').next() == Some(name))
}

/// Whether PAM accepts `password` for the host user `name` (authentication and account
/// checks: an expired or locked account fails).
pub fn authenticate(name: &str, password: &str) -> bool {
    if password.is_empty() || name.is_empty() {
        return false;
    }
    let Ok(mut auth) = pam::Authenticator::with_password(SERVICE) else {
        tracing::warn!("PAM: cannot start service '{SERVICE}'");
        return false;
    };
    auth.get_handler().set_credentials(name, password);
    auth.authenticate().is_ok()
}
