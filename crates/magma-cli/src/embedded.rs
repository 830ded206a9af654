//! A tiny random-weight Magma model built into the binary, so every subcommand can be tried
//! without downloading anything: the `magma-tiny-crop` fixture model (crop strategy,
//! `<image_start>/<image_end>` prompts, 96-px crops; its outputs are gibberish by design).
//!
//! The files are extracted once into `$XDG_CACHE_HOME/magma-rs/embedded-tiny-<hash>/` (or
//! `~/.cache/...`, falling back to the temp dir), keyed by a hash of their content.

use std::path::{Path, PathBuf};

use anyhow::Context;

macro_rules! embedded_files {
    ($($name:literal),* $(,)?) => {
        &[$((
            $name,
            include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../tests/fixtures/magma-parity/models/magma-tiny-crop/",
                $name
            )),
        )),*]
    };
}

/// `(file name, content)` of every file of the embedded model folder.
const FILES: &[(&str, &[u8])] = embedded_files!(
    "config.json",
    "generation_config.json",
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "model.safetensors",
);

/// Help text for `--model` options that default to the embedded model.
pub const MODEL_HELP: &str = "Model folder (config.json, tokenizer.json, preprocessor_config.json, ...). \
Default: the embedded magma-tiny-crop, a tiny random-weight test model, for trying the tool without a download";

/// The folder of the embedded model, extracted on first use (atomically: written to a temporary
/// folder, then renamed into place, so concurrent runs never see half-written files). Later
/// calls find the complete folder and return at once.
pub fn embedded_model_dir() -> anyhow::Result<PathBuf> {
    let name = format!("embedded-tiny-{:016x}", content_hash());
    let mut errors = Vec::new();
    for root in cache_roots() {
        let dir = root.join(&name);
        if is_complete(&dir) {
            return Ok(dir);
        }
        match extract(&root, &dir) {
            Ok(()) => return Ok(dir),
            Err(e) => errors.push(format!("{}: {e:#}", root.display())),
        }
    }
    anyhow::bail!(
        "cannot extract the embedded model (pass --model DIR instead): {}",
        errors.join("; ")
    )
}

/// `model` if given, else the embedded model's folder.
pub fn model_dir_or_embedded(model: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    match model {
        Some(dir) => Ok(dir),
        None => embedded_model_dir(),
    }
}

/// `--model` and `--offline` of the commands that run a model, resolved by [`ModelSource::dir`].
#[derive(clap::Args, Debug)]
pub struct ModelSource {
    /// Model folder, or a hub id such as `microsoft/Magma-8B[@revision]` looked up in the local
    /// Hugging Face cache ($HF_HUB_CACHE, $HF_HOME/hub or ~/.cache/huggingface/hub) and downloaded
    /// into it when missing (from $HF_ENDPOINT, default huggingface.co; $HF_TOKEN for gated models).
    /// Default: the tiny random-weight model embedded in this binary (for trying the tool).
    #[arg(long)]
    pub model: Option<String>,
    /// Never download: use only the local Hugging Face cache (same as HF_HUB_OFFLINE=1).
    #[arg(long)]
    pub offline: bool,
}

impl ModelSource {
    /// The folder of `--model` (a hub id is downloaded unless offline), or the embedded model's.
    pub fn dir(&self) -> anyhow::Result<PathBuf> {
        match &self.model {
            Some(spec) => {
                let mut options = magma_model::hub::HubOptions::from_env();
                options.offline |= self.offline;
                Ok(magma_model::hub::resolve_model_with(spec, &options)?)
            }
            None => embedded_model_dir().context("unpacking the embedded tiny model"),
        }
    }
}

/// Where to try extracting, best first.
fn cache_roots() -> Vec<PathBuf> {
    let mut roots = Vec::new();
    if let Some(cache) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        roots.push(PathBuf::from(cache).join("magma-rs"));
    } else if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        roots.push(PathBuf::from(home).join(".cache/magma-rs"));
    }
    roots.push(std::env::temp_dir().join("magma-rs"));
    roots
}

fn is_complete(dir: &Path) -> bool {
    FILES.iter().all(|(name, bytes)| {
        std::fs::metadata(dir.join(name)).is_ok_and(|m| m.len() == bytes.len() as u64)
    })
}

fn extract(root: &Path, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    let tmp = root.join(format!(
        ".{}.tmp-{}",
        dir.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    for (name, bytes) in FILES {
        std::fs::write(tmp.join(name), bytes)
            .with_context(|| format!("writing {}", tmp.join(name).display()))?;
    }
    if let Err(e) = std::fs::rename(&tmp, dir) {
        let _ = std::fs::remove_dir_all(&tmp);
        // Another process may have finished the same extraction first.
        if !is_complete(dir) {
            return Err(e).with_context(|| format!("renaming into {}", dir.display()));
        }
    }
    Ok(())
}

/// FNV-1a (64 bit) over every file name and content: changes whenever the embedded files do.
fn content_hash() -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (name, bytes) in FILES {
        for &b in name.as_bytes().iter().chain(*bytes) {
            hash ^= b as u64;
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_once_into_the_cache() {
        let cache =
            std::env::temp_dir().join(format!("magma-embedded-test-{}", std::process::id()));
        let root = cache.join("magma-rs");
        let dir = root.join("embedded-tiny-test");
        extract(&root, &dir).unwrap();
        assert!(is_complete(&dir));
        let safetensors = std::fs::read(dir.join("model.safetensors")).unwrap();
        assert_eq!(safetensors.len(), FILES[6].1.len());
        // A second extraction into an existing folder is harmless.
        extract(&root, &dir).unwrap();
        assert!(is_complete(&dir));
        std::fs::remove_dir_all(&cache).unwrap();
    }

    #[test]
    fn hash_covers_the_content() {
        assert_eq!(content_hash(), content_hash());
        assert_ne!(content_hash(), 0xcbf2_9ce4_8422_2325);
    }
}
