//! Inputs found by the `cargo fuzz` targets in `fuzz/` (see docs/hardening.md): each must give a
//! clear error, not a panic.

use magma_model::quant::GgufTensors;

fn push_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A GGUF v3 file with one F32 tensor `w` of the given dimensions and offset, and 256 data bytes.
fn gguf_with_tensor(dims: &[u64], offset: u64) -> Vec<u8> {
    let mut out = b"GGUF".to_vec();
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&1u64.to_le_bytes()); // tensors
    out.extend_from_slice(&0u64.to_le_bytes()); // metadata entries
    push_str(&mut out, "w");
    out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
    for d in dims {
        out.extend_from_slice(&d.to_le_bytes());
    }
    out.extend_from_slice(&0u32.to_le_bytes()); // F32
    out.extend_from_slice(&offset.to_le_bytes());
    out.resize(out.len().next_multiple_of(32) + 256, 0);
    out
}

fn open(bytes: &[u8]) -> String {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir =
        std::env::temp_dir().join(format!("magma-gguf-regression-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("model.gguf"), bytes).unwrap();
    let result = GgufTensors::open_dir(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    match result {
        Ok(_) => panic!("a damaged GGUF file was accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn gguf_shapes_whose_size_overflows_are_refused() {
    // fuzz/gguf_header: the product of the dimensions overflowed (a panic in debug builds, a
    // wrapped size that could pass the length check in release builds)
    let err = open(&gguf_with_tensor(&[1 << 40, 1 << 40], 0));
    assert!(
        err.contains("tensor `w`") && err.contains("too large"),
        "{err}"
    );
    // a size that fits but an offset that pushes the byte range past u64
    let err = open(&gguf_with_tensor(&[4], u64::MAX - 8));
    assert!(err.contains("tensor `w`"), "{err}");
    // and a plain too-short file still says what is missing
    let err = open(&gguf_with_tensor(&[1 << 20], 0));
    assert!(err.contains('w'), "{err}");
}
