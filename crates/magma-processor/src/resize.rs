//! Bilinear resize with PyTorch's `interpolate(mode="bilinear", align_corners=False)` semantics
//! (no antialiasing), on float planes.
//!
//! The resize is separable: every needed source row is first interpolated horizontally, then pairs
//! of those rows are blended vertically. That is the same order of float32 operations as PyTorch's
//! CPU kernel (`(x00*wx0 + x01*wx1)*wy0 + (x10*wx0 + x11*wx1)*wy1`), so results agree to the last
//! bit up to compiler contraction differences.

use rayon::prelude::*;

/// Source indices and weights of a 1-D linear interpolation from `in_size` to `out_size` samples.
#[derive(Debug, Clone)]
pub struct LinearAxis {
    idx0: Vec<usize>,
    idx1: Vec<usize>,
    w0: Vec<f32>,
    w1: Vec<f32>,
}

impl LinearAxis {
    /// Builds the table exactly as PyTorch does, all in float32: `scale = in/out`,
    /// `src = (dst + 0.5)*scale - 0.5` clamped below at 0, left index `floor(src)` capped at the
    /// last sample, right index one further unless at the edge, `w1 = clamp(src - left, 0, 1)`,
    /// `w0 = 1 - w1`. Equal sizes copy (PyTorch special-cases them the same way).
    ///
    /// `in_size` must be at least 1.
    ///
    /// ```
    /// use magma_processor::resize::LinearAxis;
    /// let axis = LinearAxis::new(2, 4);
    /// // dst 1 -> src (1.5*0.5 - 0.5) = 0.25: 0.75 of sample 0 and 0.25 of sample 1.
    /// assert_eq!(axis.taps(1), (0, 1, 0.75, 0.25));
    /// // dst 0 -> src -0.25, clamped to 0.
    /// assert_eq!(axis.taps(0), (0, 1, 1.0, 0.0));
    /// ```
    pub fn new(in_size: usize, out_size: usize) -> Self {
        let mut axis = Self {
            idx0: Vec::with_capacity(out_size),
            idx1: Vec::with_capacity(out_size),
            w0: Vec::with_capacity(out_size),
            w1: Vec::with_capacity(out_size),
        };
        let last = in_size.saturating_sub(1);
        let scale = in_size as f32 / out_size as f32;
        for dst in 0..out_size {
            let (i0, i1, lambda1) = if in_size == out_size {
                (dst, dst, 0.0f32)
            } else {
                let src = (scale * (dst as f32 + 0.5) - 0.5).max(0.0);
                let i0 = (src.floor() as usize).min(last);
                let lambda1 = (src - i0 as f32).clamp(0.0, 1.0);
                (i0, if i0 < last { i0 + 1 } else { i0 }, lambda1)
            };
            axis.idx0.push(i0);
            axis.idx1.push(i1);
            axis.w0.push(1.0 - lambda1);
            axis.w1.push(lambda1);
        }
        axis
    }

    /// Number of output samples.
    pub fn len(&self) -> usize {
        self.idx0.len()
    }

    /// True when the axis has no output samples.
    pub fn is_empty(&self) -> bool {
        self.idx0.is_empty()
    }

    /// `(left index, right index, left weight, right weight)` of output sample `dst`.
    pub fn taps(&self, dst: usize) -> (usize, usize, f32, f32) {
        (self.idx0[dst], self.idx1[dst], self.w0[dst], self.w1[dst])
    }
}

/// How the resized planes are laid out in the output buffer: a `rows x cols` grid of
/// `tile_h x tile_w` tiles, tiles in row-major order, each tile `[channels, tile_h, tile_w]`.
/// A single tile (`rows = cols = 1`) is a plain CHW image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileLayout {
    pub rows: usize,
    pub cols: usize,
    pub tile_h: usize,
    pub tile_w: usize,
}

impl TileLayout {
    fn out_h(&self) -> usize {
        self.rows * self.tile_h
    }

    fn out_w(&self) -> usize {
        self.cols * self.tile_w
    }
}

/// Resizes `channels` planes of `in_h x in_w` to the full size of `layout` and writes them tiled
/// into `out` (length `rows*cols*channels*tile_h*tile_w`).
///
/// Source rows are produced on demand by `fill_row(channel, y, row)`, which writes the `in_w`
/// values of that row; only rows the vertical pass reads are requested. This lets the caller fuse
/// pixel conversion into the resize without materialising the full-size source.
pub(crate) fn resize_into_tiles<F>(
    channels: usize,
    in_h: usize,
    in_w: usize,
    layout: TileLayout,
    fill_row: F,
    out: &mut [f32],
) where
    F: Fn(usize, usize, &mut [f32]) + Sync,
{
    let (out_h, out_w) = (layout.out_h(), layout.out_w());
    let vertical = LinearAxis::new(in_h, out_h);
    let horizontal = LinearAxis::new(in_w, out_w);

    // Which source rows the vertical pass reads, and where each lands in the intermediate buffer.
    let mut slot_of_row = vec![usize::MAX; in_h];
    let mut needed_rows = Vec::new();
    for &y in vertical.idx0.iter().chain(&vertical.idx1) {
        if slot_of_row[y] == usize::MAX {
            slot_of_row[y] = needed_rows.len();
            needed_rows.push(y);
        }
    }
    let n_rows = needed_rows.len();

    // Pass 1: horizontal interpolation of the needed rows, [channels, n_rows, out_w].
    let mut rows_h = vec![0f32; channels * n_rows * out_w];
    rows_h.par_chunks_mut(out_w).enumerate().for_each_init(
        || vec![0f32; in_w],
        |src_row, (k, dst_row)| {
            let (channel, slot) = (k / n_rows, k % n_rows);
            fill_row(channel, needed_rows[slot], src_row);
            let taps = horizontal
                .idx0
                .iter()
                .zip(&horizontal.idx1)
                .zip(horizontal.w0.iter().zip(&horizontal.w1));
            for (d, ((&i0, &i1), (&w0, &w1))) in dst_row.iter_mut().zip(taps) {
                *d = src_row[i0] * w0 + src_row[i1] * w1;
            }
        },
    );

    // Pass 2: vertical blend, written straight into each tile's channel plane.
    let plane = layout.tile_h * layout.tile_w;
    out.par_chunks_mut(plane).enumerate().for_each(|(k, dst)| {
        let tile = k / channels;
        let channel = k % channels;
        let (tile_row, tile_col) = (tile / layout.cols, tile % layout.cols);
        let x0 = tile_col * layout.tile_w;
        let channel_rows = &rows_h[channel * n_rows * out_w..(channel + 1) * n_rows * out_w];
        for (y, dst_row) in dst.chunks_exact_mut(layout.tile_w).enumerate() {
            let (i0, i1, w0, w1) = vertical.taps(tile_row * layout.tile_h + y);
            let top = &channel_rows[slot_of_row[i0] * out_w + x0..][..layout.tile_w];
            let bottom = &channel_rows[slot_of_row[i1] * out_w + x0..][..layout.tile_w];
            for ((d, &a), &b) in dst_row.iter_mut().zip(top).zip(bottom) {
                *d = a * w0 + b * w1;
            }
        }
    });
}

/// Resizes a CHW float tensor `[channels, in_h, in_w]` to `[channels, out_h, out_w]` with PyTorch
/// bilinear semantics (`align_corners=False`, no antialias).
///
/// Returns `None` when `src.len()` does not match the shape or a size is zero.
///
/// ```
/// use magma_processor::resize::resize_bilinear_chw;
/// let up = resize_bilinear_chw(&[0.0, 1.0], [1, 1, 2], (1, 4)).unwrap();
/// assert_eq!(up, vec![0.0, 0.25, 0.75, 1.0]);
/// ```
pub fn resize_bilinear_chw(
    src: &[f32],
    [channels, in_h, in_w]: [usize; 3],
    (out_h, out_w): (usize, usize),
) -> Option<Vec<f32>> {
    if channels * in_h * in_w == 0 || out_h * out_w == 0 || src.len() != channels * in_h * in_w {
        return None;
    }
    let layout = TileLayout {
        rows: 1,
        cols: 1,
        tile_h: out_h,
        tile_w: out_w,
    };
    let mut out = vec![0f32; channels * out_h * out_w];
    let plane = in_h * in_w;
    resize_into_tiles(
        channels,
        in_h,
        in_w,
        layout,
        |c, y, row| row.copy_from_slice(&src[c * plane + y * in_w..][..in_w]),
        &mut out,
    );
    Some(out)
}
