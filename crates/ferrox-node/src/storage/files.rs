//! Files into a storage: `download-url` (the node fetches an http(s) URL) and `upload`
//! (a client's multipart upload, stored by the HTTP layer). Either is written as
//! `<file>.tmp` and renamed once complete and its checksum (if given) matched: a failed or
//! interrupted transfer leaves nothing that looks like the file.

use crate::Node;
use ferrox_api::{TaskError, TaskLog};
use sha2::Digest;
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// Checksum algorithms `download-url` and `upload` check (the SHA-2 family).
pub const CHECKSUM_ALGORITHMS: &[&str] = &["sha224", "sha256", "sha384", "sha512"];

/// An expected checksum: algorithm and hex digest.
#[derive(Debug, Clone)]
pub struct Checksum {
    pub algorithm: String,
    pub hex: String,
}

enum Hasher {
    Sha224(sha2::Sha224),
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
}

impl Hasher {
    fn new(algorithm: &str) -> Option<Hasher> {
        Some(match algorithm {
            "sha224" => Hasher::Sha224(sha2::Sha224::new()),
            "sha256" => Hasher::Sha256(sha2::Sha256::new()),
            "sha384" => Hasher::Sha384(sha2::Sha384::new()),
            "sha512" => Hasher::Sha512(sha2::Sha512::new()),
            _ => return None,
        })
    }
    fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha224(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha384(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }
    fn hex(self) -> String {
        let bytes = match self {
            Hasher::Sha224(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
            Hasher::Sha384(h) => h.finalize().to_vec(),
            Hasher::Sha512(h) => h.finalize().to_vec(),
        };
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Copies `reader` into `target` through `<target>.tmp`, checking the checksum; the bytes
/// copied. On failure nothing is left at either path.
fn write_verified(
    reader: &mut dyn Read,
    what: &str,
    target: &Path,
    checksum: Option<&Checksum>,
    log: &TaskLog,
) -> Result<u64, String> {
    let tmp = target.with_extension(format!(
        "{}.tmp",
        target.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    let result = (|| -> Result<u64, String> {
        let mut file =
            std::fs::File::create(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
        let mut hasher = checksum.and_then(|c| Hasher::new(&c.algorithm));
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0u64;
        loop {
            let n = reader
                .read(&mut buf)
                .map_err(|e| format!("reading {what}: {e}"))?;
            if n == 0 {
                break;
            }
            file.write_all(&buf[..n])
                .map_err(|e| format!("{}: {e}", tmp.display()))?;
            if let Some(h) = hasher.as_mut() {
                h.update(&buf[..n]);
            }
            total += n as u64;
        }
        file.sync_all()
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
        if let (Some(expected), Some(h)) = (checksum, hasher) {
            let got = h.hex();
            if !got.eq_ignore_ascii_case(expected.hex.trim()) {
                return Err(format!(
                    "checksum mismatch: {} is {got}, expected {}",
                    expected.algorithm, expected.hex
                ));
            }
            log.log(format!("{} checksum verified", expected.algorithm));
        }
        std::fs::rename(&tmp, target).map_err(|e| format!("{}: {e}", target.display()))?;
        Ok(total)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

impl Node {
    /// The worker of `download`: `url` into `target` (an absolute path the storage chose).
    pub fn download_url(
        &self,
        url: &str,
        target: &Path,
        checksum: Option<&Checksum>,
        log: &TaskLog,
    ) -> Result<(), TaskError> {
        log.log(format!("downloading {url} to {}", target.display()));
        let started = Instant::now();
        let result = (|| -> Result<u64, String> {
            let agent = ureq::AgentBuilder::new()
                .timeout_connect(Duration::from_secs(30))
                .timeout_read(Duration::from_secs(120))
                .build();
            let response = agent.get(url).call().map_err(|e| e.to_string())?;
            if let Some(len) = response
                .header("content-length")
                .and_then(|l| l.parse::<u64>().ok())
            {
                log.log(format!("size: {len} bytes"));
            }
            write_verified(&mut response.into_reader(), url, target, checksum, log)
        })();
        let bytes = result.map_err(|e| format!("download failed: {e}"))?;
        log.log(format!(
            "downloaded {bytes} bytes in {:.1} s to {}",
            started.elapsed().as_secs_f64(),
            target.display()
        ));
        Ok(())
    }

    /// The worker of `upload`: the file the HTTP layer stored (now `stored`, owned by this
    /// task and removed at its end) into `target`.
    pub fn store_upload(
        &self,
        stored: &Path,
        target: &Path,
        checksum: Option<&Checksum>,
        log: &TaskLog,
    ) -> Result<(), TaskError> {
        let started = Instant::now();
        let result = std::fs::File::open(stored)
            .map_err(|e| format!("{}: {e}", stored.display()))
            .and_then(|mut f| write_verified(&mut f, "the upload", target, checksum, log));
        let _ = std::fs::remove_file(stored);
        let bytes = result.map_err(|e| format!("upload failed: {e}"))?;
        log.log(format!(
            "stored {bytes} bytes in {:.1} s as {}",
            started.elapsed().as_secs_f64(),
            target.display()
        ));
        Ok(())
    }
}
