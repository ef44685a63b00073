//! The module store: verified module bytes kept on disk by their sha256, next to the compile
//! cache, so that a restarted operator does not depend on the module's source.
//!
//! Without it, an operator restart had to fetch every provider's module again, and a rollback
//! after a restart had to find the old module at its source: a registry outage, a moved tag or a
//! deleted file at that moment left providers without a plugin. A GPUProvider pins its module
//! by digest, so any bytes that hash to that digest are the module, wherever they come from: the
//! store hands back bytes only after hashing them again (a truncated or altered file is deleted
//! and the module fetched as if it were not there).
//!
//! The store is bounded: past [`ModuleStore::max_bytes`] the least recently used modules are
//! deleted (a use touches the file's modification time). A store that cannot be written (a full
//! or read-only disk) costs the next restart a fetch, nothing else: every failure here is logged
//! and otherwise ignored.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::digest::ModuleDigest;

/// The store's size bound by default: a few dozen modules of a few MiB.
pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;

/// File name extension of a stored module.
const EXTENSION: &str = "wasm";

/// Verified module bytes on disk, by sha256.
#[derive(Debug, Clone)]
pub struct ModuleStore {
    dir: PathBuf,
    max_bytes: u64,
}

impl ModuleStore {
    /// A store in `dir` (created if missing), bounded to `max_bytes`.
    pub fn open(dir: impl Into<PathBuf>, max_bytes: u64) -> io::Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        Ok(Self { dir, max_bytes })
    }

    /// Where the modules are.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The size bound.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    fn path_of(&self, digest: &ModuleDigest) -> PathBuf {
        self.dir.join(format!("{}.{EXTENSION}", digest.hex()))
    }

    /// The module with `digest`, if it is stored and its bytes still hash to it. A file that
    /// does not is deleted. Blocking.
    pub fn get(&self, digest: &ModuleDigest) -> Option<Vec<u8>> {
        let path = self.path_of(digest);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read a stored module; fetching it instead");
                return None;
            }
        };
        if !digest.matches(&bytes) {
            tracing::warn!(path = %path.display(), digest = %digest.hex(), "a stored module does not match its digest (truncated or altered); deleting it and fetching the module instead");
            let _ = fs::remove_file(&path);
            return None;
        }
        touch(&path);
        Some(bytes)
    }

    /// Keeps `bytes`, which the caller verified against `digest`, then deletes the least
    /// recently used modules past the size bound (never this one). Blocking; failures are
    /// logged: the store is an optimisation.
    pub fn put(&self, digest: &ModuleDigest, bytes: &[u8]) {
        let path = self.path_of(digest);
        if path.exists() {
            touch(&path);
        } else if let Err(e) = write_atomically(&path, bytes) {
            tracing::warn!(path = %path.display(), error = %e, "cannot store a module; a restarted operator will fetch it again");
            return;
        }
        if let Err(e) = self.evict(&path) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot trim the module store");
        }
    }

    /// Deletes the least recently used modules until the store fits its bound, keeping `keep`.
    fn evict(&self, keep: &Path) -> io::Result<()> {
        let mut stored = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some(EXTENSION) {
                continue;
            }
            let meta = entry.metadata()?;
            let used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            stored.push((used, meta.len(), path));
        }
        let mut total: u64 = stored.iter().map(|(_, len, _)| len).sum();
        // Oldest first.
        stored.sort();
        for (_, len, path) in stored {
            if total <= self.max_bytes {
                break;
            }
            if path == keep {
                continue;
            }
            fs::remove_file(&path)?;
            tracing::info!(path = %path.display(), "module store full: deleted the least recently used module");
            total -= len;
        }
        Ok(())
    }
}

/// Marks `path` as used now (its modification time orders eviction).
fn touch(path: &Path) {
    let _ = fs::File::options()
        .append(true)
        .open(path)
        .and_then(|f| f.set_modified(SystemTime::now()));
}

/// Writes `bytes` to `path` through a temporary file and a rename, so that a crash never
/// leaves a partial module under the final name (it would be refused anyway: its hash would
/// not match).
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension(format!("{EXTENSION}.tmp{}", std::process::id()));
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn module(seed: u8, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    /// Sets `digest`'s file's modification time `secs` seconds into the past.
    fn age(store: &ModuleStore, digest: &ModuleDigest, secs: u64) {
        let when = SystemTime::now() - Duration::from_secs(secs);
        fs::File::options()
            .append(true)
            .open(store.path_of(digest))
            .unwrap()
            .set_modified(when)
            .unwrap();
    }

    #[test]
    fn stored_modules_come_back_only_when_they_still_hash_to_their_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModuleStore::open(dir.path().join("modules"), DEFAULT_MAX_BYTES).unwrap();
        let bytes = module(1, 10_000);
        let digest = ModuleDigest::of(&bytes);
        assert_eq!(store.get(&digest), None, "nothing stored yet");

        store.put(&digest, &bytes);
        assert_eq!(store.get(&digest), Some(bytes.clone()));
        // Storing it again changes nothing.
        store.put(&digest, &bytes);
        assert_eq!(store.get(&digest), Some(bytes.clone()));
        let names: Vec<_> = fs::read_dir(store.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(
            names,
            [format!("{}.wasm", digest.hex())],
            "no temporary left"
        );

        // Truncated on disk: refused and deleted.
        fs::write(store.path_of(&digest), &bytes[..5_000]).unwrap();
        assert_eq!(store.get(&digest), None);
        assert!(!store.path_of(&digest).exists(), "the bad file is deleted");
    }

    #[test]
    fn the_least_recently_used_modules_go_first_past_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModuleStore::open(dir.path(), 25_000).unwrap();
        let (a, b, c) = (module(1, 10_000), module(2, 10_000), module(3, 10_000));
        let (da, db, dc) = (
            ModuleDigest::of(&a),
            ModuleDigest::of(&b),
            ModuleDigest::of(&c),
        );
        store.put(&da, &a);
        store.put(&db, &b);
        age(&store, &da, 300);
        age(&store, &db, 200);
        // Using `a` makes `b` the least recently used.
        assert!(store.get(&da).is_some());
        store.put(&dc, &c);
        assert!(store.get(&db).is_none(), "b was the least recently used");
        assert_eq!(store.get(&da), Some(a));
        assert_eq!(store.get(&dc), Some(c));
    }

    #[test]
    fn a_module_larger_than_the_bound_is_kept_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModuleStore::open(dir.path(), 5_000).unwrap();
        let (small, big) = (module(1, 4_000), module(2, 8_000));
        let (ds, db) = (ModuleDigest::of(&small), ModuleDigest::of(&big));
        store.put(&ds, &small);
        age(&store, &ds, 100);
        store.put(&db, &big);
        assert_eq!(store.get(&db), Some(big), "the module just stored stays");
        assert_eq!(store.get(&ds), None);
    }

    #[test]
    fn an_unwritable_store_is_only_a_missed_optimisation() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModuleStore::open(dir.path().join("m"), DEFAULT_MAX_BYTES).unwrap();
        fs::remove_dir(store.dir()).unwrap();
        // The directory is gone: put logs and returns, get finds nothing.
        let bytes = module(1, 100);
        let digest = ModuleDigest::of(&bytes);
        store.put(&digest, &bytes);
        assert_eq!(store.get(&digest), None);
    }
}
