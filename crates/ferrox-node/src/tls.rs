//! The node's TLS identity: a self-signed certificate created on first start
//! (`nodes/<node>/pve-ssl.pem` and `.key`, as Proxmox VE), and its SHA-256 fingerprint.

use anyhow::Context;
use sha2::{Digest, Sha256};
use std::path::Path;

#[derive(Debug, Clone)]
pub struct Identity {
    pub cert_pem: String,
    pub key_pem: String,
    /// `AA:BB:...`, 32 bytes: what `ssl_fingerprint` reports and clients pin.
    pub fingerprint: String,
}

/// SHA-256 of a certificate's DER bytes, in Proxmox VE's notation.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn pem_to_der(pem: &str) -> anyhow::Result<Vec<u8>> {
    use base64::Engine;
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .context("certificate PEM is not base64")
}

impl Identity {
    pub fn load_or_create(dir: &Path, node: &str) -> anyhow::Result<Identity> {
        let cert_path = dir.join("pve-ssl.pem");
        let key_path = dir.join("pve-ssl.key");
        if !(cert_path.exists() && key_path.exists()) {
            let names = vec![
                node.to_string(),
                "localhost".to_string(),
                "127.0.0.1".to_string(),
            ];
            let cert = rcgen::generate_simple_self_signed(names)
                .context("creating the self-signed certificate")?;
            ferrox_api::fsutil::write_atomic(
                &key_path,
                cert.key_pair.serialize_pem().as_bytes(),
                0o600,
            )
            .with_context(|| format!("writing {}", key_path.display()))?;
            ferrox_api::fsutil::write_atomic(&cert_path, cert.cert.pem().as_bytes(), 0o644)
                .with_context(|| format!("writing {}", cert_path.display()))?;
        }
        let cert_pem = std::fs::read_to_string(&cert_path)
            .with_context(|| format!("reading {}", cert_path.display()))?;
        let key_pem = std::fs::read_to_string(&key_path)
            .with_context(|| format!("reading {}", key_path.display()))?;
        let fingerprint = fingerprint(&pem_to_der(&cert_pem)?);
        Ok(Identity {
            cert_pem,
            key_pem,
            fingerprint,
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn created_once_and_reloaded_with_the_same_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let a = super::Identity::load_or_create(dir.path(), "n1").unwrap();
        let b = super::Identity::load_or_create(dir.path(), "n1").unwrap();
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_eq!(a.fingerprint.len(), 32 * 3 - 1);
    }
}
