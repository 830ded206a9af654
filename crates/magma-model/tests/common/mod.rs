//! Shared helpers of the integration tests: fixture paths, .npy loading, tolerance checks.
#![allow(dead_code)] // each test binary uses a different subset

use candle_core::{DType, Device, Tensor};
use magma_model::{ImageBatch, MagmaModel};
use std::path::PathBuf;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/magma-parity")
}

pub fn manifest() -> serde_json::Value {
    let text = std::fs::read_to_string(fixtures().join("cases.json")).expect("cases.json");
    serde_json::from_str(&text).expect("cases.json is JSON")
}

pub fn load_model(name: &str) -> MagmaModel {
    MagmaModel::load(
        &fixtures().join("models").join(name),
        DType::F32,
        &Device::Cpu,
    )
    .expect("fixture model loads")
}

pub struct Case {
    pub dir: PathBuf,
}

impl Case {
    pub fn new(model: &str, case: &str) -> Self {
        Self {
            dir: fixtures().join("cases").join(model).join(case),
        }
    }

    pub fn has(&self, name: &str) -> bool {
        self.dir.join(format!("{name}.npy")).exists()
    }

    pub fn tensor(&self, name: &str) -> Tensor {
        Tensor::read_npy(self.dir.join(format!("{name}.npy"))).expect(name)
    }

    pub fn ids(&self, name: &str) -> Vec<u32> {
        self.tensor(name)
            .flatten_all()
            .and_then(|t| t.to_dtype(DType::U32))
            .and_then(|t| t.to_vec1::<u32>())
            .expect(name)
    }

    /// Pixel values and grids as the processor would hand them over (batch axis dropped).
    pub fn images(&self) -> Option<ImageBatch> {
        if !self.has("pixel_values") {
            return None;
        }
        let pixel_values = self.tensor("pixel_values").squeeze(0).expect("batch axis");
        let sizes = self.ids("image_sizes");
        let grids = sizes
            .chunks(2)
            .map(|rc| (rc[0] as usize, rc[1] as usize))
            .collect();
        Some(ImageBatch {
            pixel_values,
            grids,
        })
    }
}

/// Asserts |ours − reference| ≤ atol + rtol·|reference| elementwise (same element count, any shape).
pub fn assert_close(what: &str, ours: &Tensor, reference: &Tensor, atol: f32, rtol: f32) {
    assert_eq!(
        ours.elem_count(),
        reference.elem_count(),
        "{what}: {:?} vs reference {:?}",
        ours.dims(),
        reference.dims()
    );
    let ours = ours
        .flatten_all()
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let reference = reference
        .flatten_all()
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let mut worst = (0usize, 0f32);
    for (i, (a, b)) in ours.iter().zip(&reference).enumerate() {
        let excess = (a - b).abs() - (atol + rtol * b.abs());
        assert!(!a.is_nan(), "{what}: NaN at {i}");
        if excess > worst.1 {
            worst = (i, excess);
        }
    }
    assert!(
        worst.1 <= 0.0,
        "{what}: element {} is {} vs reference {} (tolerance {atol} + {rtol}·|ref|)",
        worst.0,
        ours[worst.0],
        reference[worst.0]
    );
}

pub fn tolerance(manifest: &serde_json::Value, tensor: &str) -> (f32, f32) {
    let t = &manifest["tolerances"][tensor];
    (
        t["atol"].as_f64().unwrap() as f32,
        t["rtol"].as_f64().unwrap() as f32,
    )
}

pub fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = i;
        }
    }
    best as u32
}
