//! Helpers shared by the fuzz targets: parsers that read files get the input through a file in a
//! per-process scratch folder.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A folder of this fuzzing process (under the system temp folder), created once.
pub fn scratch_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("magma-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch folder");
        dir
    })
}

/// Writes `bytes` to `name` in the scratch folder and returns its path.
pub fn scratch_file(name: &str, bytes: &[u8]) -> PathBuf {
    let path = scratch_dir().join(name);
    std::fs::write(&path, bytes).expect("scratch file");
    path
}

/// An empty sub-folder `name` of the scratch folder (emptied if it exists).
pub fn empty_dir(name: &str) -> PathBuf {
    let dir = scratch_dir().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch sub-folder");
    dir
}
