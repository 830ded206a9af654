//! Helpers of `magma bench model` for quantized and full-size runs: `--preset magma-8b` (the real
//! Magma-8B architecture with random weights), `--quantize`, and the peak resident memory.

use magma_marks::image::{self, RgbImage};
use magma_model::quant::QuantFormat;
use magma_model::{MagmaConfig, TrunkGeometry};

/// A full-size architecture to build with random weights.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    /// ConvNeXt-XXLarge trunk (depths 3/4/30/3, widths 384/768/1536/3072), projector
    /// 3072→4096→4096, LLaMA-3-8B decoder (32 layers, 4096 wide, 32/8 heads, MLP 14336,
    /// vocab 128261). Random weights in f32 are about 35 GB: use it with `--quantize`.
    #[value(name = "magma-8b")]
    Magma8b,
}

impl Preset {
    /// The preset's name as given on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Magma8b => "magma-8b",
        }
    }

    /// `base` (the bench folder's config, which matches its tokenizer) resized to the preset.
    pub fn apply(self, base: MagmaConfig) -> (MagmaConfig, TrunkGeometry) {
        match self {
            Self::Magma8b => {
                let mut config = base;
                let text = &mut config.text;
                text.hidden_size = 4096;
                text.intermediate_size = 14336;
                text.num_hidden_layers = 32;
                text.num_attention_heads = 32;
                text.num_key_value_heads = Some(8);
                text.head_dim = None;
                text.vocab_size = 128_261;
                text.tie_word_embeddings = false;
                config.vision.hidden_size = 4096;
                config.vision.mm_hidden_size = 3072;
                config.projector_depth = 2;
                (config, TrunkGeometry::convnext_xxlarge())
            }
        }
    }
}

/// Parses `--quantize` (q4k, q5k, q6k, q8_0).
pub fn parse_format(name: &str) -> Result<QuantFormat, String> {
    name.parse()
        .map_err(|e: magma_model::quant::QuantError| e.to_string())
}

/// The centre square of `image`, resized to one `size`×`size` crop (a one-crop prompt).
pub fn one_crop(image: &RgbImage, size: u32) -> RgbImage {
    let side = image.width().min(image.height());
    let x = (image.width() - side) / 2;
    let y = (image.height() - side) / 2;
    let square = image::imageops::crop_imm(image, x, y, side, side).to_image();
    image::imageops::resize(&square, size, size, image::imageops::FilterType::Triangle)
}

/// The process's peak resident set size in MiB (`VmHWM` of /proc/self/status; Linux only).
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}
