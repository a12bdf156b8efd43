//! HTTPS client agents that pin the server certificate by its SHA-256 fingerprint, as
//! Proxmox VE clients do with self-signed node certificates. Used by the CLI and by
//! nodes talking to each other.

use anyhow::{anyhow, bail, Context, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

/// Accepts exactly the certificate with the pinned fingerprint (or any, when `None`).
#[derive(Debug)]
struct Pinned {
    fingerprint: Option<Vec<u8>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.fingerprint {
            None => Ok(ServerCertVerified::assertion()),
            Some(fp) if Sha256::digest(end_entity.as_ref()).as_slice() == fp.as_slice() => {
                Ok(ServerCertVerified::assertion())
            }
            Some(_) => Err(rustls::Error::General(
                "server certificate does not match the pinned fingerprint".into(),
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// An HTTPS agent that accepts exactly the certificate with this SHA-256 fingerprint, or
/// any certificate with `None`.
pub fn tls_agent(fingerprint: Option<Vec<u8>>) -> Result<ureq::Agent> {
    Ok(tls_agent_builder(fingerprint)?
        .timeout(Duration::from_secs(60))
        .build())
}

/// The same, for callers that set their own timeouts. Note that ureq's connect timeout
/// (30 s by default) wins over a request's own timeout: set it for anything that must
/// notice a dead peer quickly.
pub fn tls_agent_builder(fingerprint: Option<Vec<u8>>) -> Result<ureq::AgentBuilder> {
    Ok(ureq::AgentBuilder::new().tls_config(tls_client_config(fingerprint)?))
}

/// The TLS client configuration behind the agents (for raw TLS streams).
pub fn tls_client_config(fingerprint: Option<Vec<u8>>) -> Result<Arc<rustls::ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .context("TLS setup")?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned {
            fingerprint,
            provider,
        }))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

pub fn parse_fingerprint(text: &str) -> Result<Vec<u8>> {
    let hex: String = text.chars().filter(|c| *c != ':').collect();
    if hex.len() != 64 {
        bail!("--fingerprint: expected 32 bytes as AA:BB:..., got '{text}'");
    }
    (0..64)
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&hex[i..i + 2], 16)
                .map_err(|_| anyhow!("--fingerprint: '{text}' is not hex"))
        })
        .collect()
}
