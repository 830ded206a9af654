//! Helpers shared by the integration tests: fixture paths, the manifest, tolerance checks.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};

use magma_processor::npy;
use serde_json::Value;

/// The in-repo parity fixtures.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/magma-parity")
}

/// `cases.json`.
pub fn manifest() -> Value {
    let path = fixtures().join("cases.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `(atol, rtol)` of a tensor kind from the manifest's `tolerances`.
pub fn tolerance(manifest: &Value, kind: &str) -> (f64, f64) {
    let t = &manifest["tolerances"][kind];
    (
        t["atol"].as_f64().expect("atol"),
        t["rtol"].as_f64().expect("rtol"),
    )
}

pub fn read_npy(path: &Path) -> npy::NpyArray {
    npy::read(path).unwrap_or_else(|e| panic!("{e}"))
}

pub fn read_i64(path: &Path) -> Vec<i64> {
    read_npy(path)
        .to_i64()
        .unwrap_or_else(|| panic!("{} is not integer", path.display()))
}

/// Asserts |ours - ref| <= atol + rtol*|ref| elementwise; returns the max abs difference.
pub fn assert_close(what: &str, ours: &[f32], reference: &[f32], (atol, rtol): (f64, f64)) -> f64 {
    assert_eq!(ours.len(), reference.len(), "{what}: length");
    let mut max_diff = 0f64;
    for (i, (&a, &b)) in ours.iter().zip(reference).enumerate() {
        let diff = (a as f64 - b as f64).abs();
        max_diff = max_diff.max(diff);
        assert!(
            diff <= atol + rtol * (b as f64).abs(),
            "{what}: element {i}: ours {a} vs reference {b} (diff {diff:e})"
        );
    }
    max_diff
}

/// Per-channel sums (f64) of `[n, 3, h, w]` data.
pub fn channel_sums(data: &[f32], plane: usize) -> [f64; 3] {
    let mut sums = [0f64; 3];
    for (k, chunk) in data.chunks_exact(plane).enumerate() {
        sums[k % 3] += chunk.iter().map(|&v| v as f64).sum::<f64>();
    }
    sums
}

pub fn as_usize_pair(v: &Value) -> (usize, usize) {
    (
        v[0].as_u64().expect("int") as usize,
        v[1].as_u64().expect("int") as usize,
    )
}
