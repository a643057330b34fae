//! `--state-dir`: the last config the operator pushed that went live, kept on disk as
//! `config-<namespace>.json` so a restarted sidecar serves it at once, even while the
//! operator is away (fail-static). Writes are atomic (temp file, fsync, rename): a
//! crash mid-write leaves the previous file. A file that cannot be read or parsed is
//! ignored with a warning; the sidecar then waits for the operator as if there were none.

use std::io::Write;
use std::path::{Path, PathBuf};

use eventcast_api::CompiledConfig;
use serde::{Deserialize, Serialize};

/// What the cache file holds: a snapshot as the operator sent it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CachedConfig {
    /// The operator's version of the snapshot.
    pub version: String,
    pub config: CompiledConfig,
}

/// Why the cache could not be written.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("writing config cache {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("encoding config cache: {0}")]
    Encode(#[from] serde_json::Error),
}

/// The cache file of one namespace in a state directory.
#[derive(Clone, Debug)]
pub struct ConfigCache {
    path: PathBuf,
}

impl ConfigCache {
    pub fn new(state_dir: &Path, namespace: &str) -> Self {
        Self {
            path: state_dir.join(format!("config-{namespace}.json")),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cached snapshot; `None` when there is none, or (with a warning) when the file
    /// cannot be read or parsed.
    pub fn load(&self) -> Option<CachedConfig> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "config cache unreadable; ignoring it");
                return None;
            }
        };
        match serde_json::from_slice(&bytes) {
            Ok(cached) => Some(cached),
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "config cache corrupted; ignoring it");
                None
            }
        }
    }

    /// Replaces the cache atomically (creating the directory if needed).
    pub fn store(&self, cached: &CachedConfig) -> Result<(), CacheError> {
        let json = serde_json::to_vec(cached)?;
        let io = |source| CacheError::Io {
            path: self.path.clone(),
            source,
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let name = self
            .path
            .file_name()
            .map_or_else(|| "config.json".into(), |n| n.to_string_lossy().into_owned());
        let tmp = self.path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
        let written = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&json)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(e));
        }
        // Make the rename itself durable; failing that only weakens crash safety.
        if let Some(dir) = self.path.parent()
            && let Err(e) = std::fs::File::open(dir).and_then(|d| d.sync_all())
        {
            tracing::debug!(error = %e, "syncing the state directory");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use eventcast_api::config::ResourceRef;

    use super::*;

    fn snapshot(version: &str) -> CachedConfig {
        CachedConfig {
            version: version.into(),
            config: CompiledConfig {
                namespace: "demo".into(),
                sources: vec![ResourceRef {
                    kind: "Topic".into(),
                    namespace: "demo".into(),
                    name: "chat".into(),
                    generation: Some(3),
                }],
                ..CompiledConfig::default()
            },
        }
    }

    #[test]
    fn a_stored_config_reads_back_and_replaces_the_previous_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = ConfigCache::new(&dir.path().join("nested"), "demo");
        assert_eq!(cache.load(), None, "nothing cached yet");
        cache.store(&snapshot("v-1")).expect("store");
        assert_eq!(cache.load(), Some(snapshot("v-1")));
        cache.store(&snapshot("v-2")).expect("store again");
        assert_eq!(cache.load().map(|c| c.version), Some("v-2".into()));
        assert!(cache.path().ends_with("nested/config-demo.json"));
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("nested"))
            .expect("read dir")
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(leftovers, ["config-demo.json"], "no temp files are left behind");
    }

    #[test]
    fn a_corrupted_cache_is_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = ConfigCache::new(dir.path(), "demo");
        std::fs::write(cache.path(), b"{\"version\": \"v-1\", \"config\": {trunc").expect("write");
        assert_eq!(cache.load(), None);
        std::fs::write(cache.path(), b"").expect("write");
        assert_eq!(cache.load(), None);
        // Writing over it repairs it.
        cache.store(&snapshot("v-3")).expect("store");
        assert_eq!(cache.load().map(|c| c.version), Some("v-3".into()));
    }

    #[test]
    fn a_failed_write_keeps_the_previous_cache() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = ConfigCache::new(dir.path(), "demo");
        cache.store(&snapshot("v-1")).expect("store");
        // A directory where the temp file would go makes the write fail.
        let tmp = dir.path().join(format!(".config-demo.json.{}.tmp", std::process::id()));
        std::fs::create_dir(&tmp).expect("block the temp path");
        assert!(cache.store(&snapshot("v-2")).is_err());
        assert_eq!(cache.load().map(|c| c.version), Some("v-1".into()));
    }
}
