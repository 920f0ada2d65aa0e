//! Where bundles and account keys live between runs. [`FileStorage`] keeps each bundle as the
//! files of a TLS Secret (`tls.crt`, `tls.key`, `ca.crt`) with who issued it and how many times,
//! in a folder of its own per revision, reached through a symbolic link named after the Secret
//! (as the kubelet's atomic writer does): the new revision is written and synced in full, then
//! the link is swapped in one rename, so a crash at any moment leaves the old bundle or the new,
//! never a new key beside an old certificate. What is read back is checked all the same (the
//! chain parses, the key is the certificate's): a torn or tampered bundle is reported, not
//! served.

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

/// Writes `bytes` to `path` so that readers see the old contents or the new, never a mix, and
/// the new contents are on disk when it returns.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    let temporary = path.with_extension("tmp");
    write_synced(&temporary, bytes)?;
    std::fs::rename(&temporary, path).map_err(io(path))?;
    sync_parent(path)
}

/// Writes a new file readable by the owner only (it may hold a key), synced to disk.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    file.write_all(bytes).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

/// Makes a rename or a new entry in `path`'s folder durable.
fn sync_parent(path: &Path) -> Result<(), StorageError> {
    let Some(parent) = path.parent() else {
        return Ok(());
    };
    std::fs::File::open(parent)
        .and_then(|dir| dir.sync_all())
        .map_err(io(parent))
}

const REVISION_FOLDER_PREFIX: char = '.';

impl FileStorage {
    pub fn new(root: impl Into<PathBuf>) -> FileStorage {
        FileStorage { root: root.into() }
    }

    fn file_name(name: &str) -> String {
        name.replace('/', "_")
    }

    /// The link (or, as earlier versions kept it, the folder) readers go through.
    fn dir(&self, name: &str) -> PathBuf {
        self.root.join(Self::file_name(name))
    }

    /// The folder of one revision.
    fn revision_dir(&self, name: &str, revision: u64) -> PathBuf {
        self.root.join(format!(
            "{REVISION_FOLDER_PREFIX}{}.{revision}",
            Self::file_name(name)
        ))
    }

    /// The bundle stored as `name`, if any. An error when what is there is not a whole bundle
    /// whose key is its certificate's.
    pub fn load(&self, name: &str) -> Result<Option<Bundle>, StorageError> {
        self.recover(name)?;
        let dir = self.dir(name);
        let read = |file: &str| -> Result<Option<String>, StorageError> {
            let path = dir.join(file);
            match std::fs::read_to_string(&path) {
                Ok(text) => Ok(Some(text)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(source) => Err(StorageError::Io { path, source }),
            }
        };
        let (chain, key) = match (read("tls.crt")?, read("tls.key")?) {
            (Some(chain), Some(key)) => (chain, key),
            (None, None) => return Ok(None),
            (chain, _) => {
                let missing = if chain.is_none() {
                    "tls.crt"
                } else {
                    "tls.key"
                };
                let path = dir.join(missing);
                return Err(StorageError::Io {
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "missing beside the rest of the bundle",
                    ),
                    path,
                });
            }
        };
        let bundle = Bundle::from_pem(chain, key, read("ca.crt")?).map_err(|source| {
            StorageError::Bundle {
                path: dir.join("tls.crt"),
                source,
            }
        })?;
        bundle.check_key().map_err(|source| StorageError::Bundle {
            path: dir.join("tls.key"),
            source,
        })?;
        Ok(Some(bundle))
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
            .filter(|n| !n.starts_with(REVISION_FOLDER_PREFIX))
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

    /// Stores `bundle` as `name`, issued by `issuer`, as its next revision: written whole into
    /// a folder of its own, then put in place of the last one by swapping the link to it.
    pub fn store(&self, name: &str, bundle: &Bundle, issuer: &str) -> Result<(), StorageError> {
        let revision = self.revision(name) + 1;
        let folder = self.revision_dir(name, revision);
        std::fs::create_dir_all(&self.root).map_err(io(&self.root))?;
        // What a store cut short left of this revision.
        match std::fs::remove_dir_all(&folder) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&folder)(e)),
            _ => {}
        }
        std::fs::create_dir(&folder).map_err(io(&folder))?;
        let revision_text = revision.to_string();
        let mut files = vec![
            ("issuer", issuer.as_bytes()),
            ("tls.key", bundle.key_pem.as_bytes()),
            ("tls.crt", bundle.chain_pem.as_bytes()),
        ];
        if let Some(ca) = &bundle.ca_pem {
            files.push(("ca.crt", ca.as_bytes()));
        }
        files.push(("revision", revision_text.as_bytes()));
        for (file, bytes) in files {
            write_synced(&folder.join(file), bytes)?;
        }
        sync_parent(&folder.join("tls.crt"))?;

        let dir = self.dir(name);
        let link = self.root.join(format!(
            "{REVISION_FOLDER_PREFIX}{}.link",
            Self::file_name(name)
        ));
        match std::fs::remove_file(&link) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&link)(e)),
            _ => {}
        }
        let target = folder
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_else(|| folder.clone());
        std::os::unix::fs::symlink(&target, &link).map_err(io(&link))?;
        // A folder as earlier versions kept it cannot be replaced by a rename: it moves aside
        // as a revision of its own first (a crash between the two renames is found by `load`
        // through `recover`).
        if std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
            std::fs::rename(&dir, self.revision_dir(name, revision - 1)).map_err(io(&dir))?;
        }
        std::fs::rename(&link, &dir).map_err(io(&dir))?;
        sync_parent(&dir)?;
        self.remove_revisions_but(name, revision);
        Ok(())
    }

    /// Puts the link back to the newest whole revision when a crash took the old folder aside
    /// and left no link in its place.
    fn recover(&self, name: &str) -> Result<(), StorageError> {
        let dir = self.dir(name);
        if std::fs::symlink_metadata(&dir).is_ok() {
            return Ok(());
        }
        let Some((revision, folder)) = self
            .revisions(name)
            .into_iter()
            .rev()
            .find(|(_, folder)| folder.join("revision").is_file())
        else {
            return Ok(());
        };
        tracing::warn!(
            certificate = name,
            revision,
            "linking the certificate's last whole revision again"
        );
        let target = folder.file_name().map(PathBuf::from).unwrap_or(folder);
        std::os::unix::fs::symlink(&target, &dir).map_err(io(&dir))?;
        sync_parent(&dir)
    }

    /// `name`'s revision folders, oldest first.
    fn revisions(&self, name: &str) -> Vec<(u64, PathBuf)> {
        let prefix = format!("{REVISION_FOLDER_PREFIX}{}.", Self::file_name(name));
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut revisions: Vec<(u64, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let revision = entry
                    .file_name()
                    .to_str()?
                    .strip_prefix(&prefix)?
                    .parse::<u64>()
                    .ok()?;
                Some((revision, entry.path()))
            })
            .collect();
        revisions.sort();
        revisions
    }

    /// Removes the folders of `name`'s revisions other than `kept` (best effort: a leftover
    /// only takes room).
    fn remove_revisions_but(&self, name: &str, kept: u64) {
        for (revision, folder) in self.revisions(name) {
            if revision != kept {
                let _ = std::fs::remove_dir_all(folder);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::request::{CertificateRequest, KeyAlgorithm};

    fn bundle(key: KeyAlgorithm) -> Bundle {
        crate::local::self_signed(
            &CertificateRequest {
                dns_names: vec!["web.example.test".into()],
                key,
                duration: Duration::from_secs(3600),
                reuse_key_pem: None,
            },
            SystemTime::now(),
        )
        .unwrap()
    }

    #[test]
    fn bundles_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let storage = FileStorage::new(dir.path());
        assert_eq!(storage.load("default/web-tls").unwrap(), None);
        let bundle = bundle(KeyAlgorithm::EcdsaP256);
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

    #[test]
    fn a_torn_or_mismatched_bundle_is_an_error_naming_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let storage = FileStorage::new(dir.path());
        storage
            .store(
                "default/web-tls",
                &bundle(KeyAlgorithm::EcdsaP256),
                "Issuer a",
            )
            .unwrap();
        let folder = dir.path().join("default_web-tls");
        let chain = std::fs::read_to_string(folder.join("tls.crt")).unwrap();

        std::fs::write(folder.join("tls.crt"), &chain[..chain.len() / 2]).unwrap();
        let torn = storage.load("default/web-tls").unwrap_err().to_string();
        assert!(torn.contains("default_web-tls/tls.crt"), "{torn}");
        // A whole leaf and a chain cut short after it.
        let cut = format!("{chain}{}", &chain[..chain.len() / 2]);
        std::fs::write(folder.join("tls.crt"), cut).unwrap();
        let torn = storage.load("default/web-tls").unwrap_err().to_string();
        assert!(torn.contains("default_web-tls/tls.crt"), "{torn}");

        std::fs::write(folder.join("tls.crt"), &chain).unwrap();
        let other = bundle(KeyAlgorithm::EcdsaP256);
        std::fs::write(folder.join("tls.key"), &other.key_pem).unwrap();
        let mismatched = storage.load("default/web-tls").unwrap_err().to_string();
        assert!(
            mismatched.contains("default_web-tls/tls.key")
                && mismatched.contains("not the certificate's"),
            "{mismatched}"
        );

        std::fs::remove_file(folder.join("tls.key")).unwrap();
        let missing = storage.load("default/web-tls").unwrap_err().to_string();
        assert!(missing.contains("default_web-tls/tls.key"), "{missing}");
    }

    #[test]
    fn a_store_cut_short_leaves_the_last_revision_whole() {
        let dir = tempfile::tempdir().unwrap();
        let storage = FileStorage::new(dir.path());
        let first = bundle(KeyAlgorithm::EcdsaP256);
        storage
            .store("default/web-tls", &first, "Issuer a")
            .unwrap();
        // What a crash while writing revision 2 leaves: a folder with a new key and no more.
        let partial = dir.path().join(".default_web-tls.2");
        std::fs::create_dir(&partial).unwrap();
        std::fs::write(
            partial.join("tls.key"),
            bundle(KeyAlgorithm::Ed25519).key_pem,
        )
        .unwrap();
        assert_eq!(storage.load("default/web-tls").unwrap(), Some(first));
        assert_eq!(storage.revision("default/web-tls"), 1);

        let second = bundle(KeyAlgorithm::Rsa(2048));
        storage
            .store("default/web-tls", &second, "Issuer b")
            .unwrap();
        assert_eq!(storage.load("default/web-tls").unwrap(), Some(second));
        assert_eq!(
            storage.issuer("default/web-tls").as_deref(),
            Some("Issuer b")
        );
        assert_eq!(storage.revision("default/web-tls"), 2);
        let mut entries: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        entries.sort();
        assert_eq!(entries, [".default_web-tls.2", "default_web-tls"]);
    }

    #[test]
    fn a_folder_kept_by_an_earlier_version_becomes_a_revision_even_across_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let storage = FileStorage::new(dir.path());
        let old = bundle(KeyAlgorithm::EcdsaP256);
        let folder = dir.path().join("default_web-tls");
        std::fs::create_dir(&folder).unwrap();
        std::fs::write(folder.join("tls.crt"), &old.chain_pem).unwrap();
        std::fs::write(folder.join("tls.key"), &old.key_pem).unwrap();
        std::fs::write(folder.join("ca.crt"), old.ca_pem.as_ref().unwrap()).unwrap();
        std::fs::write(folder.join("revision"), "3").unwrap();
        assert_eq!(storage.load("default/web-tls").unwrap(), Some(old.clone()));

        // The crash between moving the folder aside and linking the new revision.
        std::fs::rename(&folder, dir.path().join(".default_web-tls.3")).unwrap();
        assert_eq!(storage.load("default/web-tls").unwrap(), Some(old));
        assert_eq!(storage.names(), ["default/web-tls"]);

        let new = bundle(KeyAlgorithm::EcdsaP256);
        storage.store("default/web-tls", &new, "Issuer a").unwrap();
        assert_eq!(storage.load("default/web-tls").unwrap(), Some(new));
        assert_eq!(storage.revision("default/web-tls"), 4);
    }
}
