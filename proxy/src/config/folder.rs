//! The folder source: every `*.yaml`, `*.yml` and `*.json` file under a directory, read as
//! `kubectl apply --recursive -f DIR` would (multi-document files and `kind: List` included).
//!
//! A file that stops parsing keeps its last good contents, and an object that stops fitting its
//! schema keeps its last good version, so a typo never takes down what was serving. Entries whose
//! names start with `.` are skipped: editors' swap files, and the `..data` links of a mounted
//! ConfigMap (whose visible files are followed instead).

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde_json::Value;
use tracing::info;
use walkdir::WalkDir;

use super::object::{Object, ObjectRef, Parsed, parse_object};
use super::store::Store;
use crate::problem::Problem;

#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    #[error("configuration folder {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("configuration folder {}: not a directory", path.display())]
    NotADirectory { path: PathBuf },
}

/// A folder of resource files and what was last read from each.
#[derive(Debug)]
pub struct FolderSource {
    root: PathBuf,
    files: HashMap<PathBuf, LoadedFile>,
    /// The files in the order the walk finds them (by name, directory by directory): of two
    /// definitions of one object, the first in this order wins.
    order: Vec<PathBuf>,
    /// Problems walking the folder itself (unreadable directories, link loops).
    walk_problems: Vec<Problem>,
}

#[derive(Debug)]
struct LoadedFile {
    path: Arc<Path>,
    /// What the file looked like when read; `None` when it must be read again to be sure.
    stamp: Option<FileStamp>,
    contents: Vec<u8>,
    objects: Vec<(ObjectRef, Object)>,
    problems: Vec<Problem>,
}

/// What tells a file's contents changed without reading them: its identity, size and times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp {
    device: u64,
    inode: u64,
    len: u64,
    modified: (i64, i64),
    changed: (i64, i64),
}

/// A file modified this recently may be written again within the file system's timestamp
/// granularity without its stamp changing: it is read again next time ("racy" files, as git
/// calls them).
const RACY: Duration = Duration::from_secs(2);

impl FileStamp {
    fn of(path: &Path) -> Option<FileStamp> {
        let meta = std::fs::metadata(path).ok()?;
        let modified = meta.modified().ok()?;
        let recent = SystemTime::now()
            .duration_since(modified)
            .map_or(true, |age| age < RACY);
        (!recent).then(|| FileStamp {
            device: meta.dev(),
            inode: meta.ino(),
            len: meta.len(),
            modified: (meta.mtime(), meta.mtime_nsec()),
            changed: (meta.ctime(), meta.ctime_nsec()),
        })
    }
}

impl FolderSource {
    /// Opens a folder and reads everything in it.
    pub fn open(root: &Path) -> Result<Self, FolderError> {
        let metadata = std::fs::metadata(root).map_err(|source| FolderError::Unreadable {
            path: root.to_owned(),
            source,
        })?;
        if !metadata.is_dir() {
            return Err(FolderError::NotADirectory {
                path: root.to_owned(),
            });
        }
        let mut source = FolderSource {
            root: root.to_owned(),
            files: HashMap::new(),
            order: Vec::new(),
            walk_problems: Vec::new(),
        };
        source.rescan();
        Ok(source)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A folder of one file with `contents`, read from memory: what the fuzz target (`fuzz/`)
    /// gives the parser and compile without touching the disk.
    pub fn of_one_file(name: &str, contents: Vec<u8>) -> Self {
        let path = PathBuf::from(name);
        let file = parse_file(Arc::from(path.as_path()), contents, None);
        FolderSource {
            root: PathBuf::new(),
            files: HashMap::from([(path.clone(), file)]),
            order: vec![path],
            walk_problems: Vec::new(),
        }
    }

    /// Reads the folder again, parsing only files whose contents changed (a file whose stamp is
    /// unchanged is not even read). Returns whether anything changed.
    pub fn rescan(&mut self) -> bool {
        let mut previous = std::mem::take(&mut self.files);
        let previous_order = std::mem::take(&mut self.order);
        let mut walk_problems = Vec::new();
        let mut changed = false;
        let mut to_parse = Vec::new();
        let walker = WalkDir::new(&self.root)
            .follow_links(true)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'));
        for entry in walker {
            let entry = match entry {
                Ok(entry) => entry,
                Err(error) => {
                    let path = error.path().map(Arc::from);
                    walk_problems.push(Problem::file(path, format!("cannot be read: {error}")));
                    continue;
                }
            };
            if !entry.file_type().is_file() || !is_config_file(entry.path()) {
                continue;
            }
            let path = entry.into_path();
            self.order.push(path.clone());
            let mut old = previous.remove(&path);
            let stamp = FileStamp::of(&path);
            if stamp.is_some() && old.as_ref().is_some_and(|old| old.stamp == stamp) {
                if let Some(old) = old.take() {
                    self.files.insert(path, old);
                }
                continue;
            }
            match std::fs::read(&path) {
                Ok(bytes) => match old {
                    Some(mut old) if old.contents == bytes => {
                        old.stamp = stamp;
                        self.files.insert(path, old);
                    }
                    old => to_parse.push((path, bytes, old, stamp)),
                },
                Err(error) => {
                    changed = true;
                    let reason = format!("cannot be read: {error}");
                    let kept = keep_previous(Arc::from(path.as_path()), Vec::new(), old, reason);
                    self.files.insert(path, kept);
                }
            }
        }
        changed |= !to_parse.is_empty();
        for loaded in parse_all(to_parse) {
            self.files.insert(loaded.path.to_path_buf(), loaded);
        }
        // A file renamed or a folder reordered changes which copy of a duplicate wins.
        changed |= self.order != previous_order;
        changed |= !previous.is_empty() || walk_problems != self.walk_problems;
        self.walk_problems = walk_problems;
        changed
    }

    /// Everything read, as a store. Of two objects with the same kind, namespace and name, the
    /// one in the file that sorts first wins and the other is reported.
    pub fn store(&self) -> Store {
        let mut store = Store::default();
        let mut first_seen: HashMap<&ObjectRef, &Arc<Path>> = HashMap::new();
        store.problems.extend(self.walk_problems.iter().cloned());
        for file in self.order.iter().filter_map(|path| self.files.get(path)) {
            for (reference, object) in &file.objects {
                if store.insert(reference, object.clone(), Some(file.path.clone())) {
                    first_seen.insert(reference, &file.path);
                } else {
                    let first = first_seen
                        .get(reference)
                        .map_or_else(String::new, |p| format!(" in {}", p.display()));
                    store.problems.push(Problem::field(
                        Some(file.path.clone()),
                        reference.clone(),
                        "metadata.name",
                        format!("{reference} is already defined{first}; this copy is ignored"),
                    ));
                }
            }
            store.problems.extend(file.problems.iter().cloned());
        }
        store
    }
}

/// Files below this many are parsed on the calling thread: a thread costs more than they do.
const FILES_PER_THREAD: usize = 64;

/// Parses changed files, spread over the CPUs when there are many (a whole folder at start, or
/// thousands of files written at once): files are independent, and parsing is most of a reload.
/// A changed file to parse: its path, contents, what it held before and its stamp.
type ToParse = (PathBuf, Vec<u8>, Option<LoadedFile>, Option<FileStamp>);

fn parse_all(work: Vec<ToParse>) -> Vec<LoadedFile> {
    let parse = |(path, bytes, old, stamp): ToParse| LoadedFile {
        stamp,
        ..parse_file(Arc::from(path.as_path()), bytes, old)
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = cpus.min(work.len() / FILES_PER_THREAD).max(1);
    if threads == 1 {
        return work.into_iter().map(parse).collect();
    }
    let mut shares: Vec<Vec<_>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, item) in work.into_iter().enumerate() {
        shares[i % threads].push(item);
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = shares
            .into_iter()
            .map(|share| scope.spawn(move || share.into_iter().map(parse).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

fn is_config_file(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

/// Parses one file. `previous` is what the file held before, kept where the new contents fail.
fn parse_file(path: Arc<Path>, contents: Vec<u8>, previous: Option<LoadedFile>) -> LoadedFile {
    let documents = match std::str::from_utf8(&contents) {
        Err(error) => Err(format!("is not UTF-8 text: {error}")),
        Ok(text) => parse_documents(&path, text),
    };
    let documents = match documents {
        Ok(documents) => documents,
        Err(reason) => return keep_previous(path, contents, previous, reason),
    };

    let mut parser = FileParser {
        path,
        previous,
        objects: Vec::new(),
        problems: Vec::new(),
    };
    for (index, document) in documents.into_iter().enumerate() {
        let position = format!("document {}", index + 1);
        match document {
            Value::Null => {}
            Value::Object(_) if is_list(&document) => {
                if let Some(Value::Array(items)) = document.get("items") {
                    for (item_index, item) in items.iter().enumerate() {
                        parser.add(item.clone(), format!("{position} item {}", item_index + 1));
                    }
                }
            }
            Value::Object(_) => parser.add(document, position),
            _ => parser.problems.push(Problem::file(
                Some(parser.path.clone()),
                format!("{position}: not an object"),
            )),
        }
    }
    LoadedFile {
        path: parser.path,
        stamp: None,
        contents,
        objects: parser.objects,
        problems: parser.problems,
    }
}

/// The objects and problems of one file being parsed.
struct FileParser {
    path: Arc<Path>,
    previous: Option<LoadedFile>,
    objects: Vec<(ObjectRef, Object)>,
    problems: Vec<Problem>,
}

impl FileParser {
    fn add(&mut self, value: Value, position: String) {
        let path = &self.path;
        match parse_object(value) {
            Parsed::Object {
                reference,
                object,
                unknown_fields,
            } => {
                for field in unknown_fields {
                    self.problems.push(Problem::field(
                        Some(path.clone()),
                        reference.clone(),
                        field,
                        format!("unknown field (not part of the {} schema)", reference.kind),
                    ));
                }
                self.objects.push((reference, object));
            }
            Parsed::Skipped { api_version, kind } => {
                info!(file = %path.display(), "{position}: skipping {api_version} {kind}: not a kind Gantry reads");
            }
            Parsed::Invalid {
                reference: Some(reference),
                field,
                reason,
            } => {
                let last_good = self
                    .previous
                    .as_ref()
                    .and_then(|p| p.objects.iter().find(|(r, _)| *r == reference));
                let reason = match last_good {
                    Some((_, object)) => {
                        self.objects.push((reference.clone(), object.clone()));
                        format!("{reason}; keeping its last good version")
                    }
                    None => reason,
                };
                self.problems
                    .push(Problem::field(Some(path.clone()), reference, field, reason));
            }
            Parsed::Invalid {
                reference: None,
                field,
                reason,
            } => {
                let at = if field.is_empty() {
                    String::new()
                } else {
                    format!(": {field}")
                };
                self.problems.push(Problem::file(
                    Some(path.clone()),
                    format!("{position}{at}: {reason}"),
                ));
            }
        }
    }
}

/// A `kind: List` (or `FooList`) document, as kubectl accepts.
fn is_list(document: &Value) -> bool {
    let kind = document.get("kind").and_then(Value::as_str).unwrap_or("");
    kind.ends_with("List") && document.get("items").is_some_and(Value::is_array)
}

/// A file that cannot be used keeps what it held before, and says so.
fn keep_previous(
    path: Arc<Path>,
    contents: Vec<u8>,
    previous: Option<LoadedFile>,
    reason: String,
) -> LoadedFile {
    let (objects, reason) = match previous {
        Some(previous) if !previous.objects.is_empty() => (
            previous.objects,
            format!("{reason}; keeping its last good contents"),
        ),
        _ => (Vec::new(), reason),
    };
    LoadedFile {
        problems: vec![Problem::file(Some(path.clone()), reason)],
        path,
        stamp: None,
        contents,
        objects,
    }
}

/// Splits a file into its documents, as JSON values.
fn parse_documents(path: &Path, text: &str) -> Result<Vec<Value>, String> {
    if path.extension().is_some_and(|e| e == "json") {
        return serde_json::Deserializer::from_str(text)
            .into_iter::<Value>()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| format!("does not parse as JSON: {error}"));
    }
    let mut documents = Vec::new();
    for document in yaml_serde::Deserializer::from_str(text) {
        let value = Value::deserialize(document)
            .map_err(|error| format!("does not parse as YAML: {error}"))?;
        documents.push(value);
    }
    Ok(documents)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NamespacedName;

    fn write(dir: &Path, name: &str, contents: &str) {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }

    const SERVICE_AND_INGRESS: &str = "apiVersion: v1
kind: Service
metadata: {name: web}
spec: {ports: [{port: 80}]}
---
# an empty document is fine
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: shop}
spec: {defaultBackend: {service: {name: web, port: {number: 80}}}}
";

    const LIST: &str = "apiVersion: v1
kind: List
items:
  - apiVersion: v1
    kind: Secret
    metadata: {name: tls}
    type: kubernetes.io/tls
    data: {tls.crt: aGVsbG8=, tls.key: aGVsbG8=}
  - apiVersion: v1
    kind: ConfigMap
    metadata: {name: skipped}
";

    #[test]
    fn reads_every_config_file_recursively_as_kubectl_would() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.yaml", SERVICE_AND_INGRESS);
        write(dir.path(), "deeper/still/list.yml", LIST);
        write(
            dir.path(),
            "class.json",
            r#"{"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
                "metadata": {"name": "gantry"}, "spec": {"controller": "gantry.dev/ingress-controller"}}"#,
        );
        write(dir.path(), ".hidden.yaml", "not: [even, valid");
        write(dir.path(), "notes.txt", "not read");
        write(dir.path(), "..data/a.yaml", SERVICE_AND_INGRESS);

        let store = FolderSource::open(dir.path()).unwrap().store();
        assert!(store.problems.is_empty(), "{:?}", store.problems);
        assert_eq!(
            store.services.keys().collect::<Vec<_>>(),
            [&NamespacedName::new("default", "web")],
            "a missing namespace is default"
        );
        assert_eq!(
            store.ingresses.keys().collect::<Vec<_>>(),
            [&NamespacedName::new("shop", "web")]
        );
        let secret = &store.secrets[&NamespacedName::new("default", "tls")].object;
        assert_eq!(
            secret.data.as_ref().unwrap()["tls.crt"].0,
            b"hello",
            "data is base64"
        );
        assert!(store.ingress_classes.contains_key("gantry"));
        assert!(store.endpoints.is_empty() && store.fixed_responses.is_empty());
    }

    #[test]
    fn rescan_reparses_only_what_changed_and_forgets_removed_files() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.yaml", SERVICE_AND_INGRESS);
        let mut source = FolderSource::open(dir.path()).unwrap();
        assert!(!source.rescan(), "nothing changed");
        write(dir.path(), "b.yaml", LIST);
        assert!(source.rescan());
        assert_eq!(source.store().secrets.len(), 1);
        std::fs::remove_file(dir.path().join("b.yaml")).unwrap();
        assert!(source.rescan());
        assert!(source.store().secrets.is_empty());
    }

    // A file is not read again while its stamp (inode, size, times) is unchanged; one written
    // within the file system's timestamp granularity of being read could keep its stamp, so a
    // recently written file is always read again.
    #[test]
    fn a_file_rewritten_at_once_with_the_same_size_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let service = |name: &str| {
            format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: a}}\n")
        };
        write(dir.path(), "s.yaml", &service("one"));
        let mut source = FolderSource::open(dir.path()).unwrap();
        write(dir.path(), "s.yaml", &service("two"));
        assert!(source.rescan());
        let names: Vec<String> = source
            .store()
            .services
            .keys()
            .map(|k| k.name.clone())
            .collect();
        assert_eq!(names, ["two"]);
    }

    #[test]
    fn a_missing_folder_is_an_error() {
        let error = FolderSource::open(Path::new("/no/such/folder")).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("configuration folder /no/such/folder")
        );
    }
}
