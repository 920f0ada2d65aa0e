//! Gantry's default TLS certificate, served to clients whose SNI names no configured host. It is
//! self-signed, generated on first start and kept under the state dir so that it stays the same
//! across restarts (clients that pinned it keep working).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::sign::CertifiedKey;
use tracing::{info, warn};

use crate::snapshot::tls::{PemError, certified_key_from_pem};

const SUBJECT: &str = "Gantry default certificate";
/// A name under `.invalid` (RFC 2606) can never be a real host.
const NAME: &str = "gantry-default.invalid";

#[derive(Debug, thiserror::Error)]
pub enum DefaultCertError {
    #[error("default certificate: generating: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("default certificate: writing {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("default certificate: the one just generated is unusable: {0}")]
    Unusable(#[from] PemError),
}

/// Loads the default certificate from `state_dir`, generating and storing it when missing or
/// unusable.
pub fn load_or_create(state_dir: &Path) -> Result<Arc<CertifiedKey>, DefaultCertError> {
    let dir = state_dir.join("default-certificate");
    let cert_path = dir.join("tls.crt");
    let key_path = dir.join("tls.key");
    if let (Ok(cert), Ok(key)) = (std::fs::read(&cert_path), std::fs::read(&key_path)) {
        match certified_key_from_pem(&cert, &key) {
            Ok(certified) => return Ok(certified),
            Err(e) => {
                warn!(dir = %dir.display(), "default certificate unusable ({e}); generating a new one")
            }
        }
    }
    let key_pair = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(vec![NAME.to_owned()])?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, SUBJECT);
    let cert = params.self_signed(&key_pair)?;
    let (cert_pem, key_pem) = (cert.pem(), key_pair.serialize_pem());
    let write_error = |path: &Path| {
        let path = path.to_owned();
        move |source| DefaultCertError::Write { path, source }
    };
    std::fs::create_dir_all(&dir).map_err(write_error(&dir))?;
    write_atomically(&key_path, key_pem.as_bytes()).map_err(write_error(&key_path))?;
    write_atomically(&cert_path, cert_pem.as_bytes()).map_err(write_error(&cert_path))?;
    info!(dir = %dir.display(), "generated the default TLS certificate");
    Ok(certified_key_from_pem(
        cert_pem.as_bytes(),
        key_pem.as_bytes(),
    )?)
}

/// Writes a file so that a crash leaves either the old contents or the new, never a torn file;
/// readable by the owner only, since it may hold a key.
fn write_atomically(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}
