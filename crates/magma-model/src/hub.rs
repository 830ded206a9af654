//! Resolves a `--model` argument: a local folder, or a hub id (`org/name[@revision]`) in the local
//! Hugging Face cache, downloaded into that cache when it is missing (cargo feature `hub`).
//!
//! The environment is read like Python's `huggingface_hub` reads it: `HF_HUB_CACHE` /
//! `HF_HOME` for the cache, `HF_ENDPOINT` for the hub's address, `HF_TOKEN` (or the token file
//! `huggingface-cli login` writes) for gated and private models, and `HF_HUB_OFFLINE=1` to never
//! touch the network.

use crate::error::{ModelError, Result};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The hub used when `HF_ENDPOINT` is not set.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Files every model folder needs besides its weights.
pub const REQUIRED_FILES: [&str; 4] = [
    "config.json",
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
];

/// Files used when a repository has them.
pub const OPTIONAL_FILES: [&str; 2] = ["generation_config.json", "special_tokens_map.json"];

/// The sharded checkpoint's index.
pub const WEIGHTS_INDEX: &str = "model.safetensors.index.json";
/// The single-file checkpoint.
pub const WEIGHTS_SINGLE: &str = "model.safetensors";

/// How hub ids are resolved: where the cache is, which hub to ask, with which token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubOptions {
    /// The hub cache folder (it holds `models--org--name/`).
    pub cache_dir: PathBuf,
    /// The hub's base URL, without a trailing `/`.
    pub endpoint: String,
    /// Bearer token for gated or private models.
    pub token: Option<String>,
    /// Use the cache only; never touch the network.
    pub offline: bool,
    /// Show download progress bars on stderr (drawn only when stderr is a terminal).
    pub progress: bool,
}

impl HubOptions {
    /// Options from the process environment (see [`HubOptions::from_vars`]).
    pub fn from_env() -> Self {
        Self::from_vars(|name| std::env::var_os(name))
    }

    /// Options from the variables `var` looks up:
    ///
    /// * cache: `HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`;
    /// * endpoint: `HF_ENDPOINT`, else [`DEFAULT_ENDPOINT`];
    /// * token: `HF_TOKEN`, else the file `HF_TOKEN_PATH`, else `$HF_HOME/token`;
    /// * offline: `HF_HUB_OFFLINE` set to `1`, `true`, `yes` or `on`.
    ///
    /// ```
    /// use magma_model::hub::HubOptions;
    /// let vars = [("HF_HOME", "/data/hf"), ("HF_ENDPOINT", "http://mirror.local/"), ("HF_HUB_OFFLINE", "1")];
    /// let options = HubOptions::from_vars(|name| {
    ///     vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.into())
    /// });
    /// assert_eq!(options.cache_dir, std::path::Path::new("/data/hf/hub"));
    /// assert_eq!(options.endpoint, "http://mirror.local");
    /// assert!(options.offline);
    /// ```
    pub fn from_vars(var: impl Fn(&str) -> Option<OsString>) -> Self {
        let set = |name: &str| var(name).filter(|v| !v.is_empty());
        let hf_home = set("HF_HOME").map(PathBuf::from).unwrap_or_else(|| {
            let home = set("HOME").map(PathBuf::from).unwrap_or_default();
            home.join(".cache").join("huggingface")
        });
        let cache_dir = set("HF_HUB_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| hf_home.join("hub"));
        let endpoint = set("HF_ENDPOINT")
            .map(|v| v.to_string_lossy().trim_end_matches('/').to_string())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        let token = set("HF_TOKEN")
            .map(|v| v.to_string_lossy().trim().to_string())
            .or_else(|| {
                let path = set("HF_TOKEN_PATH")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| hf_home.join("token"));
                std::fs::read_to_string(path)
                    .ok()
                    .map(|t| t.trim().to_string())
            })
            .filter(|t| !t.is_empty());
        // huggingface_hub's truthy spellings
        let offline = set("HF_HUB_OFFLINE").is_some_and(|v| {
            matches!(
                v.to_string_lossy().trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        });
        Self {
            cache_dir,
            endpoint,
            token,
            offline,
            progress: true,
        }
    }
}

/// The Hugging Face hub cache folder: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
/// `~/.cache/huggingface/hub`.
pub fn hub_cache_dir() -> PathBuf {
    HubOptions::from_env().cache_dir
}

/// A folder as is, or `org/name[@revision]` from the cache, downloaded first when it is missing
/// and the build has the `hub` feature; options from the environment ([`HubOptions::from_env`]).
pub fn resolve_model(spec: &str) -> Result<PathBuf> {
    resolve_model_with(spec, &HubOptions::from_env())
}

/// Like [`resolve_model`] with the cache only (never downloads), in an explicit cache folder.
///
/// The cache layout is `models--org--name/snapshots/<commit>/`, with `refs/<revision>` holding
/// the commit of a branch (default `main`); a revision may also name a snapshot directly.
///
/// ```
/// let hub = std::env::temp_dir().join(format!("magma-hub-doc-{}", std::process::id()));
/// let repo = hub.join("models--microsoft--Magma-8B");
/// let snapshot = repo.join("snapshots/abc123");
/// std::fs::create_dir_all(&snapshot)?;
/// for file in magma_model::hub::REQUIRED_FILES.iter().chain(["model.safetensors"].iter()) {
///     std::fs::write(snapshot.join(file), "")?;
/// }
/// std::fs::create_dir_all(repo.join("refs"))?;
/// std::fs::write(repo.join("refs/main"), "abc123\n")?;
/// let dir = magma_model::hub::resolve_model_in("microsoft/Magma-8B", &hub)?;
/// assert!(dir.ends_with("snapshots/abc123"));
/// # std::fs::remove_dir_all(&hub)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn resolve_model_in(spec: &str, hub_cache: &Path) -> Result<PathBuf> {
    let options = HubOptions {
        cache_dir: hub_cache.to_path_buf(),
        endpoint: DEFAULT_ENDPOINT.to_string(),
        token: None,
        offline: true,
        progress: false,
    };
    resolve_model_with(spec, &options)
}

/// Resolves `spec` with explicit [`HubOptions`]: a local folder as is; a hub id from the cache
/// when its snapshot has every file a model needs ([`missing_files`]); otherwise downloaded
/// (feature `hub`, not offline) into the standard cache layout, the files already cached kept.
pub fn resolve_model_with(spec: &str, options: &HubOptions) -> Result<PathBuf> {
    let local = Path::new(spec);
    if local.is_dir() {
        return Ok(local.to_path_buf());
    }
    let id = HubId::parse(spec).ok_or_else(|| ModelError::ModelNotFound {
        spec: spec.to_string(),
        searched: options.cache_dir.clone(),
    })?;
    let missing = match id.cached_snapshot(&options.cache_dir) {
        Some(snapshot) => {
            let missing = missing_files(&snapshot);
            if missing.is_empty() {
                return Ok(snapshot);
            }
            missing
        }
        None => REQUIRED_FILES
            .iter()
            .map(|f| f.to_string())
            .chain([no_weights()])
            .collect(),
    };
    if options.offline {
        return Err(ModelError::HubOffline {
            spec: spec.to_string(),
            cache: options.cache_dir.clone(),
            missing,
        });
    }
    download(&id, spec, options)
}

/// A parsed `org/name[@revision]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubId {
    /// `org/name`.
    pub repo: String,
    /// Branch, tag or commit (default `main`).
    pub revision: String,
}

impl HubId {
    /// `None` unless `spec` is `org/name` or `org/name@revision` with non-empty parts.
    ///
    /// ```
    /// use magma_model::hub::HubId;
    /// let id = HubId::parse("microsoft/Magma-8B@v1").unwrap();
    /// assert_eq!((id.repo.as_str(), id.revision.as_str()), ("microsoft/Magma-8B", "v1"));
    /// assert_eq!(HubId::parse("microsoft/Magma-8B").unwrap().revision, "main");
    /// assert!(HubId::parse("Magma-8B").is_none());
    /// assert!(HubId::parse("a/b/c").is_none());
    /// ```
    pub fn parse(spec: &str) -> Option<Self> {
        let (repo, revision) = spec.split_once('@').unwrap_or((spec, "main"));
        let (org, name) = repo.split_once('/')?;
        let part_ok = |p: &str| !p.is_empty() && !p.contains(['/', ' ', '\\']) && p != "..";
        (part_ok(org) && part_ok(name) && !revision.is_empty() && !revision.contains("..")).then(
            || Self {
                repo: repo.to_string(),
                revision: revision.to_string(),
            },
        )
    }

    /// `models--org--name`, the repository's folder in the cache.
    pub fn cache_folder(&self) -> String {
        format!("models--{}", self.repo.replace('/', "--"))
    }

    /// The snapshot folder of this revision in `cache`, if it exists.
    pub fn cached_snapshot(&self, cache: &Path) -> Option<PathBuf> {
        let repo = cache.join(self.cache_folder());
        let commit = std::fs::read_to_string(repo.join("refs").join(&self.revision))
            .map(|text| text.trim().to_string())
            .unwrap_or_else(|_| self.revision.clone());
        let snapshot = repo.join("snapshots").join(commit);
        snapshot.is_dir().then_some(snapshot)
    }
}

/// The files a model folder lacks: [`REQUIRED_FILES`], then the weights (`model.safetensors`,
/// or the index and every shard it lists, or a quantized `model.gguf`).
///
/// ```
/// let missing = magma_model::hub::missing_files(std::path::Path::new("/nonexistent"));
/// assert_eq!(missing[0], "config.json");
/// assert!(missing.last().unwrap().contains("model.safetensors"));
/// ```
pub fn missing_files(dir: &Path) -> Vec<String> {
    let mut missing: Vec<String> = REQUIRED_FILES
        .iter()
        .filter(|f| !dir.join(f).is_file())
        .map(|f| f.to_string())
        .collect();
    if dir.join(crate::quant::GGUF_FILE).is_file() {
        return missing;
    }
    match crate::weights::checkpoint_files(dir) {
        Ok(files) => missing.extend(files.iter().filter(|f| !f.is_file()).map(|f| {
            f.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })),
        Err(ModelError::NoWeights { .. }) => missing.push(no_weights()),
        Err(e) => missing.push(format!("{WEIGHTS_INDEX} ({e})")),
    }
    missing
}

fn no_weights() -> String {
    format!("{WEIGHTS_SINGLE} (or {WEIGHTS_INDEX} and its shards)")
}

#[cfg(not(feature = "hub"))]
fn download(_id: &HubId, spec: &str, options: &HubOptions) -> Result<PathBuf> {
    Err(ModelError::ModelNotFound {
        spec: spec.to_string(),
        searched: options.cache_dir.clone(),
    })
}

#[cfg(feature = "hub")]
use download::download;

/// Downloads with `hf-hub` (sync API over ureq with rustls).
#[cfg(feature = "hub")]
mod download {
    use super::*;
    use hf_hub::api::sync::{ApiBuilder, ApiError, ApiRepo};
    use hf_hub::{Cache, Repo, RepoType};
    use indicatif::{ProgressBar, ProgressStyle};

    /// One repository being fetched into the cache.
    struct Fetcher<'a> {
        api: ApiRepo,
        cache: hf_hub::CacheRepo,
        spec: &'a str,
        options: &'a HubOptions,
    }

    impl Fetcher<'_> {
        /// The cached or downloaded file; `None` when the hub has no such file (HTTP 404).
        fn optional(&self, file: &str) -> Result<Option<PathBuf>> {
            if let Some(path) = self.cache.get(file) {
                return Ok(Some(path));
            }
            let bar = if self.options.progress {
                ProgressBar::new(0)
            } else {
                ProgressBar::hidden()
            };
            let progress = FileProgress {
                bar,
                label: format!("{} {file}", self.spec),
            };
            match self.api.download_with_progress(file, progress) {
                Ok(path) => Ok(Some(path)),
                Err(ApiError::RequestError(e)) if matches!(*e, ureq::Error::StatusCode(404)) => {
                    Ok(None)
                }
                Err(e) => Err(self.error(file, describe(&e))),
            }
        }

        /// The cached or downloaded file; a missing one is an error.
        fn required(&self, file: &str) -> Result<PathBuf> {
            self.optional(file)?.ok_or_else(|| {
                self.error(
                    file,
                    "HTTP 404: the repository, revision or file does not exist \
                     (check the id; gated or private models need HF_TOKEN)"
                        .into(),
                )
            })
        }

        fn error(&self, file: &str, reason: String) -> ModelError {
            ModelError::HubDownload {
                spec: self.spec.to_string(),
                endpoint: self.options.endpoint.clone(),
                file: file.to_string(),
                reason,
            }
        }
    }

    /// What went wrong, in words a user can act on.
    fn describe(error: &ApiError) -> String {
        match error {
            ApiError::RequestError(e) => match &**e {
                ureq::Error::StatusCode(code @ (401 | 403)) => format!(
                    "HTTP {code}: not authorised (the repository may not exist, or it is gated \
                     or private: set HF_TOKEN to a token that has access)"
                ),
                ureq::Error::StatusCode(code) => format!("HTTP {code} from the hub"),
                other => format!(
                    "{other} (no network? HF_HUB_OFFLINE=1 or --offline uses the local cache only)"
                ),
            },
            other => other.to_string(),
        }
    }

    /// A progress bar per file, fed by hf-hub.
    struct FileProgress {
        bar: ProgressBar,
        label: String,
    }

    impl hf_hub::api::Progress for FileProgress {
        fn init(&mut self, size: usize, _filename: &str) {
            self.bar.set_style(
                ProgressStyle::with_template(
                    "{msg} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} ({eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            self.bar.set_message(self.label.clone());
            self.bar.set_length(size as u64);
            // hf-hub calls init again before resuming and then reports the bytes already there
            self.bar.set_position(0);
        }

        fn update(&mut self, size: usize) {
            self.bar.inc(size as u64);
        }

        fn finish(&mut self) {
            self.bar.finish();
        }
    }

    /// Fetches config, processor and tokenizer files, then the weights: the index and its
    /// shards, else `model.safetensors`, else a quantized `model.gguf`.
    pub(super) fn download(id: &HubId, spec: &str, options: &HubOptions) -> Result<PathBuf> {
        let repo = Repo::with_revision(id.repo.clone(), RepoType::Model, id.revision.clone());
        // hf-hub links snapshot files to blobs by relative paths computed from absolute ones
        let cache_dir =
            std::path::absolute(&options.cache_dir).map_err(|source| ModelError::Io {
                path: options.cache_dir.clone(),
                source,
            })?;
        let api = ApiBuilder::from_cache(Cache::new(cache_dir.clone()))
            .with_endpoint(options.endpoint.clone())
            .with_token(options.token.clone())
            .with_user_agent("magma-rs", env!("CARGO_PKG_VERSION"))
            .build()
            .map_err(|e| ModelError::HubDownload {
                spec: spec.to_string(),
                endpoint: options.endpoint.clone(),
                file: String::new(),
                reason: describe(&e),
            })?;
        let fetcher = Fetcher {
            api: api.repo(repo.clone()),
            cache: Cache::new(cache_dir).repo(repo),
            spec,
            options,
        };
        // config.json first: a wrong id fails here, before anything large is fetched
        let config = fetcher.required(REQUIRED_FILES[0])?;
        for file in &REQUIRED_FILES[1..] {
            fetcher.required(file)?;
        }
        for file in OPTIONAL_FILES {
            fetcher.optional(file)?;
        }
        if let Some(index) = fetcher.optional(WEIGHTS_INDEX)? {
            let dir = index.parent().unwrap_or(Path::new("."));
            for shard in crate::weights::checkpoint_files(dir)? {
                let name = shard.file_name().unwrap_or_default().to_string_lossy();
                fetcher.required(&name)?;
            }
        } else if fetcher.optional(WEIGHTS_SINGLE)?.is_none()
            && fetcher.optional(crate::quant::GGUF_FILE)?.is_none()
        {
            return Err(fetcher.error(
                WEIGHTS_SINGLE,
                format!(
                    "the repository has no weights: none of {WEIGHTS_INDEX}, {WEIGHTS_SINGLE}, {}",
                    crate::quant::GGUF_FILE
                ),
            ));
        }
        let snapshot = config.parent().unwrap_or(Path::new(".")).to_path_buf();
        let missing = missing_files(&snapshot);
        if missing.is_empty() {
            Ok(snapshot)
        } else {
            // files of another commit: the branch moved while downloading
            Err(fetcher.error(
                &missing.join(", "),
                format!(
                    "missing from the snapshot {} after the download (did the revision change \
                     meanwhile? run again)",
                    snapshot.display()
                ),
            ))
        }
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

    fn complete_snapshot(dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        for file in REQUIRED_FILES.iter().chain(&[WEIGHTS_SINGLE]) {
            std::fs::write(dir.join(file), "").unwrap();
        }
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
        complete_snapshot(&repo.join("snapshots/c0ffee"));
        complete_snapshot(&repo.join("snapshots/beef"));
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

    #[test]
    fn offline_names_every_missing_file_and_the_switch() {
        let hub = scratch("offline");
        let err = resolve_model_in("org/absent", &hub)
            .unwrap_err()
            .to_string();
        for needle in [
            "org/absent",
            "HF_HUB_OFFLINE",
            "config.json",
            "preprocessor_config.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "model.safetensors",
        ] {
            assert!(err.contains(needle), "{needle:?} not in {err}");
        }

        // an interrupted download: index present, one of two shards missing
        let snapshot = hub.join("models--org--sharded/snapshots/abc");
        complete_snapshot(&snapshot);
        std::fs::remove_file(snapshot.join(WEIGHTS_SINGLE)).unwrap();
        std::fs::write(
            snapshot.join(WEIGHTS_INDEX),
            r#"{"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}"#,
        )
        .unwrap();
        std::fs::write(snapshot.join("model-00001-of-00002.safetensors"), "").unwrap();
        assert_eq!(
            missing_files(&snapshot),
            ["model-00002-of-00002.safetensors"]
        );
        let err = resolve_model_in("org/sharded@abc", &hub)
            .unwrap_err()
            .to_string();
        assert!(err.contains("model-00002-of-00002.safetensors"), "{err}");
        assert!(!err.contains("model-00001-of-00002"), "{err}");
        std::fs::remove_dir_all(&hub).unwrap();
    }

    #[test]
    fn environment_is_read_like_huggingface_hub() {
        let lookup = |vars: &'static [(&'static str, &'static str)]| {
            HubOptions::from_vars(move |name| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| OsString::from(v))
            })
        };
        let defaults = lookup(&[("HOME", "/home/u")]);
        assert_eq!(
            defaults.cache_dir,
            Path::new("/home/u/.cache/huggingface/hub")
        );
        assert_eq!(defaults.endpoint, DEFAULT_ENDPOINT);
        assert!(!defaults.offline);
        let custom = lookup(&[
            ("HOME", "/home/u"),
            ("HF_HOME", "/hf"),
            ("HF_HUB_CACHE", "/fast/hub"),
            ("HF_TOKEN", " hf_abc \n"),
            ("HF_HUB_OFFLINE", "TRUE"),
        ]);
        assert_eq!(custom.cache_dir, Path::new("/fast/hub"));
        assert_eq!(custom.token.as_deref(), Some("hf_abc"));
        assert!(custom.offline);
        assert!(!lookup(&[("HF_HUB_OFFLINE", "0")]).offline);
        assert!(lookup(&[("HF_HOME", "/hf"), ("HF_HUB_OFFLINE", "yes")]).offline);
        assert_eq!(
            lookup(&[("HF_HOME", "/hf")]).cache_dir,
            Path::new("/hf/hub")
        );
    }
}
