//! Training samples and their collation into padded batches, as Magma's
//! `DataCollatorForSupervisedDataset` does: ids right-padded with the pad id, labels with −100,
//! cut to `model_max_length`, `attention_mask = ids ≠ pad`, each sample's crops concatenated and
//! zero-padded to the batch's largest crop count.

use crate::error::{Result, TrainError};
use candle_core::{DType, Device, Tensor};
use magma_model::autograd::{TrainBatch, IGNORE_INDEX};
use magma_processor::npy;
use std::path::Path;

/// One tokenised, labelled sample with its images.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Where it came from (item id or index), for messages.
    pub id: String,
    pub input_ids: Vec<u32>,
    /// Same length as `input_ids`; −100 where no loss.
    pub labels: Vec<i64>,
    /// `[n_crops, 3, b, b]` f32: the crops of all its images, in order.
    pub crops: Tensor,
    /// `(rows, cols)` per image.
    pub grids: Vec<(usize, usize)>,
}

impl Sample {
    /// Number of labelled tokens (after the one-position shift nothing is lost: the first
    /// token is never labelled).
    pub fn n_labelled(&self) -> usize {
        self.labels.iter().filter(|&&l| l != IGNORE_INDEX).count()
    }
}

/// Collates samples into one batch (right padding, as the reference collator).
pub fn collate(samples: &[&Sample], pad_id: u32, max_length: usize) -> Result<TrainBatch> {
    if samples.is_empty() {
        return Err(TrainError::Data("empty batch".into()));
    }
    let len = samples
        .iter()
        .map(|s| s.input_ids.len().min(max_length))
        .max()
        .unwrap_or(0);
    let max_crops = samples
        .iter()
        .map(|s| s.crops.dim(0))
        .collect::<candle_core::Result<Vec<_>>>()?;
    let max_crops = max_crops.into_iter().max().unwrap_or(0);
    let mut batch = TrainBatch {
        input_ids: Vec::new(),
        labels: Vec::new(),
        attention_mask: Vec::new(),
        pixel_values: Tensor::zeros(0, DType::F32, &Device::Cpu)?,
        image_grids: Vec::new(),
    };
    let mut pixels = Vec::new();
    for s in samples {
        if s.labels.len() != s.input_ids.len() {
            return Err(TrainError::Data(format!(
                "sample {}: {} labels for {} ids",
                s.id,
                s.labels.len(),
                s.input_ids.len()
            )));
        }
        let n = s.input_ids.len().min(max_length);
        let mut ids = s.input_ids[..n].to_vec();
        let mut labels = s.labels[..n].to_vec();
        ids.resize(len, pad_id);
        labels.resize(len, IGNORE_INDEX);
        // the reference's mask is `ids != pad`: a pad id inside the text is masked too
        batch
            .attention_mask
            .push(ids.iter().map(|&id| (id != pad_id) as u8).collect());
        batch.input_ids.push(ids);
        batch.labels.push(labels);
        batch.image_grids.push(s.grids.clone());
        let n_crops = s.crops.dim(0)?;
        pixels.push(s.crops.pad_with_zeros(0, 0, max_crops - n_crops)?);
    }
    batch.pixel_values = Tensor::stack(&pixels, 0)?;
    Ok(batch)
}

fn read_npy(path: &Path) -> Result<npy::NpyArray> {
    npy::read(path).map_err(|e| TrainError::Format {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn read_i64(path: &Path) -> Result<(Vec<i64>, Vec<usize>)> {
    let array = read_npy(path)?;
    let data = array.to_i64().ok_or_else(|| TrainError::Format {
        path: path.to_path_buf(),
        message: "expected an integer array".into(),
    })?;
    Ok((data, array.shape))
}

/// A collated batch stored as `.npy` files (`{prefix}input_ids.npy`, `labels`,
/// `attention_mask`, `image_sizes` and `pixel_values`, as in the training fixtures), split back
/// into its samples (padding removed, each sample's own crops kept).
pub fn load_collated_samples(dir: &Path, prefix: &str, pixel_values: &Path) -> Result<Vec<Sample>> {
    let file = |name: &str| dir.join(format!("{prefix}{name}.npy"));
    let (ids, shape) = read_i64(&file("input_ids"))?;
    let (labels, _) = read_i64(&file("labels"))?;
    let (mask, _) = read_i64(&file("attention_mask"))?;
    let (sizes, size_shape) = read_i64(&file("image_sizes"))?;
    let pixels = read_npy(pixel_values)?;
    let [b, l] = shape[..] else {
        return Err(TrainError::Format {
            path: file("input_ids"),
            message: format!("expected [B, L], found {shape:?}"),
        });
    };
    let pixel_shape = pixels.shape.clone();
    let pixels = Tensor::from_vec(pixels.to_f32(), pixel_shape, &Device::Cpu)?;
    let max_images = size_shape.get(1).copied().unwrap_or(0);
    let mut samples = Vec::with_capacity(b);
    for s in 0..b {
        let row = s * l..(s + 1) * l;
        let keep: Vec<usize> = row.clone().filter(|&i| mask[i] != 0).collect();
        let grids: Vec<(usize, usize)> = (0..max_images)
            .map(|k| {
                let at = (s * max_images + k) * 2;
                (sizes[at] as usize, sizes[at + 1] as usize)
            })
            .filter(|&(r, c)| r > 0 && c > 0)
            .collect();
        let n_crops: usize = grids.iter().map(|(r, c)| r * c).sum();
        samples.push(Sample {
            id: format!("{prefix}{s}"),
            input_ids: keep.iter().map(|&i| ids[i] as u32).collect(),
            labels: keep.iter().map(|&i| labels[i]).collect(),
            crops: pixels.get(s)?.narrow(0, 0, n_crops)?,
            grids,
        });
    }
    Ok(samples)
}
