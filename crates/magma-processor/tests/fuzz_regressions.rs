//! Inputs found by the `cargo fuzz` targets in `fuzz/` (see docs/hardening.md): each must give a
//! clear error, not a panic.

use magma_processor::npy;

/// A `.npy` v1.0 file with the given header dictionary and data bytes.
fn npy_file(dict: &str, data: &[u8]) -> Vec<u8> {
    let mut header = dict.to_string();
    // the header is padded with spaces to a multiple of 64 bytes (with the 10-byte preamble)
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

#[test]
fn npy_shapes_whose_size_overflows_are_refused() {
    // fuzz/npy_array: the product of the shape overflowed (a panic in debug builds)
    let file = npy_file(
        "{'descr': '<i8', 'fortran_order': False, 'shape': (18446744073709551615, 2), }",
        &[0; 16],
    );
    let err = npy::from_bytes(&file, "huge.npy").unwrap_err().to_string();
    assert!(
        err.contains("huge.npy") && err.contains("too large"),
        "{err}"
    );
    // the element count fits but the bytes do not
    let file = npy_file(
        "{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387904,), }",
        &[0; 8],
    );
    let err = npy::from_bytes(&file, "wide.npy").unwrap_err().to_string();
    assert!(err.contains("too large"), "{err}");
    // a well-formed file of the same layout still reads
    let file = npy_file(
        "{'descr': '<i8', 'fortran_order': False, 'shape': (1, 2), }",
        &[1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0],
    );
    let array = npy::from_bytes(&file, "ok.npy").expect("a valid .npy file");
    assert_eq!(array.shape, vec![1, 2]);
}
