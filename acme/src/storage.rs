//! Where bundles and account keys live between runs. [`FileStorage`] keeps each as files under
//! a folder, each written to a temporary file, synced and renamed over the old one, so that a
//! crash never leaves a torn file.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::bundle::{Bundle, BundleError};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Bundle { path: PathBuf, source: BundleError },
}

/// Bundles by name (`namespace/secret`), under a folder.
#[derive(Clone, Debug)]
pub struct FileStorage {
    root: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes `bytes` to `path` so that readers see the old contents or the new, never a mix.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::File::create(&temporary).map_err(io(&temporary))?;
    file.write_all(bytes).map_err(io(&temporary))?;
    file.sync_all().map_err(io(&temporary))?;
    std::fs::rename(&temporary, path).map_err(io(path))
}

impl FileStorage {
    pub fn new(root: impl Into<PathBuf>) -> FileStorage {
        FileStorage { root: root.into() }
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name.replace('/', "_"))
    }

    /// The bundle stored as `name`, if any.
    pub fn load(&self, name: &str) -> Result<Option<Bundle>, StorageError> {
        let dir = self.dir(name);
        let read = |file: &str| -> Result<Option<String>, StorageError> {
            let path = dir.join(file);
            match std::fs::read_to_string(&path) {
                Ok(text) => Ok(Some(text)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(source) => Err(StorageError::Io { path, source }),
            }
        };
        let (Some(chain), Some(key)) = (read("tls.crt")?, read("tls.key")?) else {
            return Ok(None);
        };
        Bundle::from_pem(chain, key, read("ca.crt")?)
            .map(Some)
            .map_err(|source| StorageError::Bundle {
                path: dir.join("tls.crt"),
                source,
            })
    }

    /// The names of every bundle stored.
    pub fn names(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().join("tls.crt").is_file())
            .filter_map(|e| e.file_name().into_string().ok())
            .map(|n| n.replacen('_', "/", 1))
            .collect();
        names.sort();
        names
    }

    /// When the bundle stored as `name` was last written, if it is there.
    pub fn modified(&self, name: &str) -> Option<std::time::SystemTime> {
        std::fs::metadata(self.dir(name).join("tls.crt"))
            .and_then(|m| m.modified())
            .ok()
    }

    /// Who issued the bundle stored as `name` (as [`FileStorage::store`] was told).
    pub fn issuer(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.dir(name).join("issuer")).ok()
    }

    /// How many times a certificate has been stored as `name` (cert-manager's `revision`).
    pub fn revision(&self, name: &str) -> u64 {
        std::fs::read_to_string(self.dir(name).join("revision"))
            .ok()
            .and_then(|r| r.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Stores `bundle` as `name`, issued by `issuer`: the key first, so that a certificate is
    /// never on disk without its key; the revision last, counting it.
    pub fn store(&self, name: &str, bundle: &Bundle, issuer: &str) -> Result<(), StorageError> {
        let dir = self.dir(name);
        let revision = self.revision(name) + 1;
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        write_atomically(&dir.join("issuer"), issuer.as_bytes())?;
        write_atomically(&dir.join("tls.key"), bundle.key_pem.as_bytes())?;
        if let Some(ca) = &bundle.ca_pem {
            write_atomically(&dir.join("ca.crt"), ca.as_bytes())?;
        }
        write_atomically(&dir.join("tls.crt"), bundle.chain_pem.as_bytes())?;
        write_atomically(&dir.join("revision"), revision.to_string().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::request::{CertificateRequest, KeyAlgorithm};

    #[test]
    fn bundles_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let storage = FileStorage::new(dir.path());
        assert_eq!(storage.load("default/web-tls").unwrap(), None);
        let bundle = crate::local::self_signed(
            &CertificateRequest {
                dns_names: vec!["web.example.test".into()],
                key: KeyAlgorithm::EcdsaP256,
                duration: Duration::from_secs(3600),
                reuse_key_pem: None,
            },
            SystemTime::now(),
        )
        .unwrap();
        storage
            .store("default/web-tls", &bundle, "Issuer default/self")
            .unwrap();
        assert_eq!(
            storage.load("default/web-tls").unwrap(),
            Some(bundle.clone())
        );
        assert_eq!(storage.names(), ["default/web-tls"]);
        assert_eq!(storage.revision("default/web-tls"), 1);
        storage
            .store("default/web-tls", &bundle, "Issuer default/self")
            .unwrap();
        assert_eq!(storage.revision("default/web-tls"), 2);
        assert_eq!(
            storage.issuer("default/web-tls").as_deref(),
            Some("Issuer default/self")
        );
    }
}
