//! Magma's image processor: normalise, choose a crop grid, stretch with bilinear resize, cut crops.

use std::path::{Path, PathBuf};

use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::grid::{best_grid, Grid};
use crate::resize::{resize_to_tiles, RowSource, Tap, TileLayout};
use crate::{read_json, ProcessorError};

/// OpenAI CLIP mean, the reference class default.
const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// OpenAI CLIP std, the reference class default (its decimal digits, rounded to f32 like torch).
#[allow(clippy::excessive_precision)]
const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];
/// Largest accepted crop side; far above Magma's 512, low enough to keep buffers sane.
const MAX_BASE_IMG_SIZE: usize = 4096;
/// Largest accepted crop count per image.
const MAX_NUM_CROPS: usize = 64;
/// The vision tower's output stride: one feature per 32x32 pixels.
const FEATURE_STRIDE: usize = 32;

/// Settings of the image processor, as in `preprocessor_config.json`.
///
/// `anyres_strategy` and `do_convert_rgb` also appear in that file but the reference ignores them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageProcessorConfig {
    /// Crop side in pixels (Magma-8B: 512).
    pub base_img_size: usize,
    /// Maximum number of crops per image (Magma-8B: 4).
    pub num_crops: usize,
    /// Per-channel mean subtracted after scaling to [0, 1].
    pub image_mean: [f32; 3],
    /// Per-channel standard deviation divided by after subtracting the mean.
    pub image_std: [f32; 3],
}

impl ImageProcessorConfig {
    /// Magma-8B's settings: 512-pixel crops, at most 4 of them, OpenAI CLIP mean and std.
    pub fn magma_8b() -> Self {
        Self {
            base_img_size: 512,
            num_crops: 4,
            image_mean: CLIP_MEAN,
            image_std: CLIP_STD,
        }
    }

    /// Reads `preprocessor_config.json`. Missing keys take the reference class defaults
    /// (`base_img_size` 768, `num_crops` 1, CLIP mean/std); present keys must be valid.
    pub fn from_file(path: &Path) -> Result<Self, ProcessorError> {
        let json = read_json(path)?;
        let field = |name: &str| json.get(name).filter(|v| !v.is_null());
        let size = |name: &str, default: usize| -> Result<usize, ProcessorError> {
            match field(name) {
                None => Ok(default),
                Some(v) => v
                    .as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| {
                        ProcessorError::config(
                            path,
                            name,
                            format!("expected a positive integer, found {v}"),
                        )
                    }),
            }
        };
        let triple = |name: &str, default: [f32; 3]| -> Result<[f32; 3], ProcessorError> {
            let Some(v) = field(name) else {
                return Ok(default);
            };
            v.as_array()
                .and_then(|a| {
                    a.iter()
                        .map(|x| x.as_f64().map(|f| f as f32))
                        .collect::<Option<Vec<f32>>>()
                })
                .and_then(|vals| <[f32; 3]>::try_from(vals).ok())
                .ok_or_else(|| {
                    ProcessorError::config(
                        path,
                        name,
                        format!("expected 3 numbers (R, G, B), found {v}"),
                    )
                })
        };
        if !json.is_object() {
            return Err(ProcessorError::config(
                path,
                "<root>",
                "expected a JSON object",
            ));
        }
        let config = Self {
            base_img_size: size("base_img_size", 768)?,
            num_crops: size("num_crops", 1)?,
            image_mean: triple("image_mean", CLIP_MEAN)?,
            image_std: triple("image_std", CLIP_STD)?,
        };
        config.validate(path)?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<(), ProcessorError> {
        if !(1..=MAX_BASE_IMG_SIZE).contains(&self.base_img_size) {
            return Err(ProcessorError::config(
                path,
                "base_img_size",
                format!(
                    "expected 1..={MAX_BASE_IMG_SIZE}, found {}",
                    self.base_img_size
                ),
            ));
        }
        if !(1..=MAX_NUM_CROPS).contains(&self.num_crops) {
            return Err(ProcessorError::config(
                path,
                "num_crops",
                format!("expected 1..={MAX_NUM_CROPS}, found {}", self.num_crops),
            ));
        }
        if self.image_std.iter().any(|s| *s == 0.0 || !s.is_finite())
            || self.image_mean.iter().any(|m| !m.is_finite())
        {
            return Err(ProcessorError::config(
                path,
                "image_std",
                "expected finite means and finite, non-zero standard deviations",
            ));
        }
        Ok(())
    }
}

/// The image half of Magma's processor, built from `preprocessor_config.json`.
///
/// ```
/// use magma_processor::{ImageProcessor, ImageProcessorConfig};
/// let processor = ImageProcessor::new(ImageProcessorConfig::magma_8b())?;
/// let image = image::RgbImage::from_pixel(640, 480, image::Rgb([200, 100, 50]));
/// let out = processor.preprocess(&image)?;
/// assert_eq!(out.grid(), (1, 2)); // stretched to 1024x512
/// assert_eq!(out.crops_shape(), [2, 3, 512, 512]);
/// assert_eq!(processor.num_image_tokens(1, 2), 16 * 33);
/// # Ok::<(), magma_processor::ProcessorError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ImageProcessor {
    config: ImageProcessorConfig,
    /// `(v/255 - mean)/std` for every 8-bit value, per channel, computed in float32 like torchvision.
    lut: [[f32; 256]; 3],
}

impl ImageProcessor {
    /// Loads `preprocessor_config.json`.
    pub fn from_file(path: &Path) -> Result<Self, ProcessorError> {
        Self::new_checked(ImageProcessorConfig::from_file(path)?, path)
    }

    /// Builds a processor from explicit settings.
    pub fn new(config: ImageProcessorConfig) -> Result<Self, ProcessorError> {
        Self::new_checked(config, &PathBuf::from("<image processor settings>"))
    }

    fn new_checked(config: ImageProcessorConfig, path: &Path) -> Result<Self, ProcessorError> {
        config.validate(path)?;
        let mut lut = [[0f32; 256]; 3];
        for (c, table) in lut.iter_mut().enumerate() {
            for (v, slot) in table.iter_mut().enumerate() {
                // ToTensor divides by 255 (not multiplies by 1/255), Normalize subtracts then divides.
                *slot = (v as f32 / 255.0 - config.image_mean[c]) / config.image_std[c];
            }
        }
        Ok(Self { config, lut })
    }

    /// The settings in use.
    pub fn config(&self) -> &ImageProcessorConfig {
        &self.config
    }

    /// Crop side in pixels.
    pub fn base_img_size(&self) -> usize {
        self.config.base_img_size
    }

    /// The `(rows, cols)` crop grid chosen for an image of `width x height` pixels
    /// (see [`crate::grid::best_grid`] for the exact rule).
    pub fn best_grid(&self, width: u32, height: u32) -> (usize, usize) {
        let grid = best_grid(
            width,
            height,
            self.config.base_img_size,
            self.config.num_crops,
        );
        (grid.rows, grid.cols)
    }

    /// Number of feature vectors the model produces for a `rows x cols` grid:
    /// `rows*f * (cols*f + 1)` with `f = base_img_size / 32` (one row separator per feature row).
    pub fn num_image_tokens(&self, rows: usize, cols: usize) -> usize {
        let f = self.config.base_img_size / FEATURE_STRIDE;
        rows * f * (cols * f + 1)
    }

    /// Normalised CHW float tensor `[3, height, width]` of an image, `(x/255 - mean)/std`.
    pub fn normalize(&self, img: &RgbImage) -> Vec<f32> {
        let plane = img.width() as usize * img.height() as usize;
        let mut out = vec![0f32; 3 * plane];
        for (i, px) in img.pixels().enumerate() {
            for c in 0..3 {
                out[c * plane + i] = self.lut[c][px.0[c] as usize];
            }
        }
        out
    }

    /// Runs the reference pipeline on one RGB image: normalise, pick the grid, resize the
    /// normalised tensor to `(rows*base, cols*base)` (bilinear, no antialias, aspect not kept),
    /// and cut `rows*cols` crops in row-major order.
    ///
    /// Normalisation is fused into the resize's row fetch, which computes the same float32 values
    /// as normalising the whole image first (the reference's order: normalise, then resize).
    pub fn preprocess(&self, img: &RgbImage) -> Result<PreprocessedImage, ProcessorError> {
        let (width, height) = img.dimensions();
        if width == 0 || height == 0 {
            return Err(ProcessorError::EmptyImage {
                what: "given to the image processor".into(),
                width,
                height,
            });
        }
        let (rows, cols) = self.best_grid(width, height);
        let base = self.config.base_img_size;
        let layout = TileLayout {
            rows,
            cols,
            tile_h: base,
            tile_w: base,
        };
        let source = NormalizedRgb {
            pixels: img.as_raw(),
            width: width as usize,
            height: height as usize,
            lut: &self.lut,
        };
        Ok(PreprocessedImage {
            grid: Grid { rows, cols },
            base,
            crops: resize_to_tiles(&source, layout),
        })
    }
}

/// An 8-bit RGB image seen through the normalisation table: the resize reads normalised values
/// straight from the interleaved pixels.
struct NormalizedRgb<'a> {
    pixels: &'a [u8],
    width: usize,
    height: usize,
    lut: &'a [[f32; 256]; 3],
}

impl RowSource for NormalizedRgb<'_> {
    fn channels(&self) -> usize {
        3
    }

    fn size(&self) -> (usize, usize) {
        (self.height, self.width)
    }

    fn interpolate_row(&self, y: usize, taps: &[Tap], out: &mut [f32]) {
        let (pixels, _) = self.pixels.as_chunks::<3>();
        let row = &pixels[y * self.width..(y + 1) * self.width];
        let (r, gb) = out.split_at_mut(taps.len());
        let (g, b) = gb.split_at_mut(taps.len());
        let [lut_r, lut_g, lut_b] = &self.lut;
        // All three channels per tap: one bounds check and one weight load serve three outputs.
        for (((&t, r), g), b) in taps.iter().zip(r).zip(g).zip(b) {
            let (p0, p1) = (row[t.i0], row[t.i1]);
            *r = t.blend(lut_r[usize::from(p0[0])], lut_r[usize::from(p1[0])]);
            *g = t.blend(lut_g[usize::from(p0[1])], lut_g[usize::from(p1[1])]);
            *b = t.blend(lut_b[usize::from(p0[2])], lut_b[usize::from(p1[2])]);
        }
    }
}

/// One preprocessed image: its crops `[rows*cols, 3, base, base]` and grid.
#[derive(Debug, Clone, PartialEq)]
pub struct PreprocessedImage {
    grid: Grid,
    base: usize,
    crops: Vec<f32>,
}

impl PreprocessedImage {
    /// `(rows, cols)` of the crop grid (the reference's `image_sizes` entry).
    pub fn grid(&self) -> (usize, usize) {
        (self.grid.rows, self.grid.cols)
    }

    /// Number of crops, `rows * cols`.
    pub fn n_crops(&self) -> usize {
        self.grid.n_crops()
    }

    /// Crop side in pixels.
    pub fn base(&self) -> usize {
        self.base
    }

    /// `(height, width)` of the resized image, `(rows*base, cols*base)`.
    pub fn resized_hw(&self) -> (usize, usize) {
        (self.grid.rows * self.base, self.grid.cols * self.base)
    }

    /// The crops, C order `[rows*cols, 3, base, base]`, row-major over the grid.
    pub fn crops(&self) -> &[f32] {
        &self.crops
    }

    /// Shape of [`Self::crops`].
    pub fn crops_shape(&self) -> [usize; 4] {
        [self.n_crops(), 3, self.base, self.base]
    }

    /// Takes the crop data.
    pub fn into_crops(self) -> Vec<f32> {
        self.crops
    }

    /// The crops stitched back into the resized image `[3, rows*base, cols*base]`: what the
    /// `global` strategy feeds to the vision tower.
    pub fn canvas(&self) -> Vec<f32> {
        let (rows, cols, base) = (self.grid.rows, self.grid.cols, self.base);
        let width = cols * base;
        let plane = rows * base * width;
        let mut canvas = vec![0f32; 3 * plane];
        for (k, crop) in self.crops.chunks_exact(3 * base * base).enumerate() {
            let (r, c) = (k / cols, k % cols);
            for (ch, crop_plane) in crop.chunks_exact(base * base).enumerate() {
                for (y, src_row) in crop_plane.chunks_exact(base).enumerate() {
                    let start = ch * plane + (r * base + y) * width + c * base;
                    canvas[start..start + base].copy_from_slice(src_row);
                }
            }
        }
        canvas
    }

    /// Shape of [`Self::canvas`].
    pub fn canvas_shape(&self) -> [usize; 3] {
        let (h, w) = self.resized_hw();
        [3, h, w]
    }
}
