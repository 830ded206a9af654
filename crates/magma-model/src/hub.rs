//! Resolves a `--model` argument: a local folder, or a hub id in the local Hugging Face cache.

use crate::error::{ModelError, Result};
use std::path::{Path, PathBuf};

/// The Hugging Face hub cache folder: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
/// `~/.cache/huggingface/hub`.
pub fn hub_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HF_HUB_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HF_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let user_home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default();
            user_home.join(".cache").join("huggingface")
        });
    home.join("hub")
}

/// A folder as is, or `org/name[@revision]` looked up in [`hub_cache_dir`].
pub fn resolve_model(spec: &str) -> Result<PathBuf> {
    resolve_model_in(spec, &hub_cache_dir())
}

/// Like [`resolve_model`] with an explicit hub cache folder.
///
/// The cache layout is `models--org--name/snapshots/<commit>/`, with `refs/<revision>` holding
/// the commit of a branch (default `main`); a revision may also name a snapshot directly.
///
/// ```
/// let hub = std::env::temp_dir().join(format!("magma-hub-doc-{}", std::process::id()));
/// let repo = hub.join("models--microsoft--Magma-8B");
/// std::fs::create_dir_all(repo.join("snapshots/abc123"))?;
/// std::fs::create_dir_all(repo.join("refs"))?;
/// std::fs::write(repo.join("refs/main"), "abc123\n")?;
/// let dir = magma_model::hub::resolve_model_in("microsoft/Magma-8B", &hub)?;
/// assert!(dir.ends_with("snapshots/abc123"));
/// # std::fs::remove_dir_all(&hub)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn resolve_model_in(spec: &str, hub_cache: &Path) -> Result<PathBuf> {
    let local = Path::new(spec);
    if local.is_dir() {
        return Ok(local.to_path_buf());
    }
    let not_found = || ModelError::ModelNotFound {
        spec: spec.to_string(),
        searched: hub_cache.to_path_buf(),
    };
    let (id, revision) = spec.split_once('@').unwrap_or((spec, "main"));
    let (org, name) = id.split_once('/').ok_or_else(not_found)?;
    if org.is_empty() || name.is_empty() || name.contains('/') {
        return Err(not_found());
    }
    let repo = hub_cache.join(format!("models--{org}--{name}"));
    let ref_file = repo.join("refs").join(revision);
    let commit = match std::fs::read_to_string(&ref_file) {
        Ok(text) => text.trim().to_string(),
        Err(_) => revision.to_string(),
    };
    let snapshot = repo.join("snapshots").join(commit);
    if snapshot.is_dir() {
        Ok(snapshot)
    } else {
        Err(not_found())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("magma-hub-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn local_folder_wins() {
        let dir = scratch("local");
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(
            resolve_model_in(dir.to_str().unwrap(), Path::new("/nonexistent")).unwrap(),
            dir
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn branch_refs_and_direct_revisions_resolve() {
        let hub = scratch("refs");
        let repo = hub.join("models--org--tiny");
        std::fs::create_dir_all(repo.join("snapshots/c0ffee")).unwrap();
        std::fs::create_dir_all(repo.join("snapshots/beef")).unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), "c0ffee").unwrap();
        assert!(resolve_model_in("org/tiny", &hub)
            .unwrap()
            .ends_with("snapshots/c0ffee"));
        assert!(resolve_model_in("org/tiny@beef", &hub)
            .unwrap()
            .ends_with("snapshots/beef"));
        let err = resolve_model_in("org/other", &hub).unwrap_err();
        assert!(err.to_string().contains("org/other"), "{err}");
        assert!(resolve_model_in("not-a-hub-id", &hub).is_err());
        std::fs::remove_dir_all(&hub).unwrap();
    }
}
