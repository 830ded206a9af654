//! Bilinear resize with PyTorch's `interpolate(mode="bilinear", align_corners=False)` semantics
//! (no antialiasing), on float planes.
//!
//! The resize is separable: every needed source row is first interpolated horizontally, then pairs
//! of those rows are blended vertically. That is the same order of float32 operations as PyTorch's
//! CPU kernel (`(x00*wx0 + x01*wx1)*wy0 + (x10*wx0 + x11*wx1)*wy1`, each product rounded before
//! the sum, never fused), so results agree to the last bit.
//!
//! Work is split into bands of output rows. A band streams through its source rows in order and
//! keeps only the two horizontally interpolated rows the current output row blends, so the
//! intermediate data stays in the L1/L2 cache and every output value is written exactly once.

use std::mem::MaybeUninit;

use rayon::prelude::*;

/// The two source samples and weights of one output sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Tap {
    /// Left (or top) source index.
    pub(crate) i0: usize,
    /// Right (or bottom) source index: `i0 + 1`, or `i0` at the last sample.
    pub(crate) i1: usize,
    /// Weight of `i0`.
    pub(crate) w0: f32,
    /// Weight of `i1`.
    pub(crate) w1: f32,
}

impl Tap {
    /// `a*w0 + b*w1` in float32, products rounded separately like PyTorch (Rust never contracts
    /// this into a fused multiply-add, which would change the last bit).
    #[inline(always)]
    pub(crate) fn blend(self, a: f32, b: f32) -> f32 {
        a * self.w0 + b * self.w1
    }
}

/// Source indices and weights of a 1-D linear interpolation from `in_size` to `out_size` samples.
#[derive(Debug, Clone)]
pub struct LinearAxis {
    taps: Vec<Tap>,
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
        let last = in_size.saturating_sub(1);
        let scale = in_size as f32 / out_size as f32;
        let taps = (0..out_size)
            .map(|dst| {
                let (i0, i1, lambda1) = if in_size == out_size {
                    (dst, dst, 0.0f32)
                } else {
                    let src = (scale * (dst as f32 + 0.5) - 0.5).max(0.0);
                    let i0 = (src.floor() as usize).min(last);
                    let lambda1 = (src - i0 as f32).clamp(0.0, 1.0);
                    (i0, if i0 < last { i0 + 1 } else { i0 }, lambda1)
                };
                Tap {
                    i0,
                    i1,
                    w0: 1.0 - lambda1,
                    w1: lambda1,
                }
            })
            .collect();
        Self { taps }
    }

    /// Number of output samples.
    pub fn len(&self) -> usize {
        self.taps.len()
    }

    /// True when the axis has no output samples.
    pub fn is_empty(&self) -> bool {
        self.taps.is_empty()
    }

    /// `(left index, right index, left weight, right weight)` of output sample `dst`.
    pub fn taps(&self, dst: usize) -> (usize, usize, f32, f32) {
        let t = self.taps[dst];
        (t.i0, t.i1, t.w0, t.w1)
    }
}

/// Interpolates one row horizontally: `out[x] = sample(i0)*w0 + sample(i1)*w1` for each tap,
/// where `sample(i)` reads source sample `i` of the row (`i` is always below the row's width).
#[inline(always)]
pub(crate) fn interpolate_row(taps: &[Tap], out: &mut [f32], sample: impl Fn(usize) -> f32) {
    for (d, &t) in out.iter_mut().zip(taps) {
        *d = t.blend(sample(t.i0), sample(t.i1));
    }
}

/// A multi-channel source image that produces horizontally interpolated rows on demand, so
/// callers can fuse pixel conversion into the resize without materialising a float image.
pub(crate) trait RowSource: Sync {
    /// Number of channels.
    fn channels(&self) -> usize;

    /// `(height, width)` in samples.
    fn size(&self) -> (usize, usize);

    /// Writes source row `y` of every channel, interpolated with `taps` (see [`interpolate_row`]),
    /// into `out`: `channels` consecutive runs of `taps.len()` values.
    fn interpolate_row(&self, y: usize, taps: &[Tap], out: &mut [f32]);
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

    /// Height of the output-row bands work is split into: about four bands per thread so rayon
    /// can balance them, but never so thin that re-interpolating the one or two source rows
    /// shared by neighbouring bands becomes a noticeable cost.
    fn band_height(&self) -> usize {
        const MIN_BAND: usize = 16;
        let wanted_bands = 4 * rayon::current_num_threads();
        let bands_per_tile_row = wanted_bands.div_ceil(self.rows).max(1);
        self.tile_h
            .div_ceil(bands_per_tile_row)
            .max(MIN_BAND)
            .min(self.tile_h)
    }
}

/// One band of output rows: rows `y0..y0 + height` of the full resized image, as one slice per
/// (tile column, channel) pair, in that order, each `height x tile_w`.
struct Band<'a> {
    y0: usize,
    planes: Vec<&'a mut [MaybeUninit<f32>]>,
}

/// Splits `out` into bands of `band_h` output rows (bands never cross a tile row).
fn split_into_bands<'a>(
    out: &'a mut [MaybeUninit<f32>],
    channels: usize,
    layout: TileLayout,
    band_h: usize,
) -> Vec<Band<'a>> {
    let bands_per_tile_row = layout.tile_h.div_ceil(band_h);
    let mut bands: Vec<Band<'a>> = (0..layout.rows * bands_per_tile_row)
        .map(|b| Band {
            y0: (b / bands_per_tile_row) * layout.tile_h + (b % bands_per_tile_row) * band_h,
            planes: Vec::with_capacity(layout.cols * channels),
        })
        .collect();
    let plane = layout.tile_h * layout.tile_w;
    // Tiles are visited in row-major order, so each band receives its planes ordered by tile
    // column, then channel.
    for (tile, tile_data) in out.chunks_exact_mut(channels * plane).enumerate() {
        let first_band = (tile / layout.cols) * bands_per_tile_row;
        for channel_plane in tile_data.chunks_exact_mut(plane) {
            for (b, part) in channel_plane.chunks_mut(band_h * layout.tile_w).enumerate() {
                bands[first_band + b].planes.push(part);
            }
        }
    }
    bands
}

/// The two most recently interpolated source rows of a band (all channels each), tagged with
/// their source row index. Source rows are visited in increasing order, so two slots suffice.
struct RowPair {
    rows: [Vec<f32>; 2],
    keys: [Option<usize>; 2],
}

impl RowPair {
    fn new(len: usize) -> Self {
        Self {
            rows: [vec![0f32; len], vec![0f32; len]],
            keys: [None, None],
        }
    }

    fn slot_of(&self, y: usize) -> Option<usize> {
        self.keys.iter().position(|&k| k == Some(y))
    }

    /// The interpolated source rows `top` and `bottom`, computing whichever is not cached.
    fn get<S: RowSource>(
        &mut self,
        source: &S,
        taps: &[Tap],
        top: usize,
        bottom: usize,
    ) -> (&[f32], &[f32]) {
        let top_slot = self.slot_of(top).unwrap_or_else(|| {
            // Keep `bottom` if it is already there.
            let slot = usize::from(self.keys[0] == Some(bottom));
            self.fill(source, taps, slot, top);
            slot
        });
        let bottom_slot = self.slot_of(bottom).unwrap_or_else(|| {
            let slot = 1 - top_slot;
            self.fill(source, taps, slot, bottom);
            slot
        });
        (&self.rows[top_slot], &self.rows[bottom_slot])
    }

    fn fill<S: RowSource>(&mut self, source: &S, taps: &[Tap], slot: usize, y: usize) {
        source.interpolate_row(y, taps, &mut self.rows[slot]);
        self.keys[slot] = Some(y);
    }
}

/// `dst[x] = top[x]*w0 + bottom[x]*w1`: the vertical pass, a plain two-row blend that the
/// compiler vectorises. Initialises all of `dst` (the three slices have the same length).
#[inline(always)]
fn blend_rows(tap: Tap, top: &[f32], bottom: &[f32], dst: &mut [MaybeUninit<f32>]) {
    for ((d, &a), &b) in dst.iter_mut().zip(top).zip(bottom) {
        d.write(tap.blend(a, b));
    }
}

/// Fills one band: for each output row, fetches its two interpolated source rows and blends
/// them into every (tile column, channel) plane of the band.
fn fill_band<S: RowSource>(
    source: &S,
    horizontal: &LinearAxis,
    vertical: &LinearAxis,
    layout: TileLayout,
    band: Band<'_>,
) {
    let channels = source.channels();
    let out_w = horizontal.len();
    let tile_w = layout.tile_w;
    let mut cache = RowPair::new(channels * out_w);
    let Band { y0, mut planes } = band;
    let height = planes.first().map_or(0, |p| p.len() / tile_w);
    for (local_y, &tap) in vertical.taps[y0..y0 + height].iter().enumerate() {
        let (top, bottom) = cache.get(source, &horizontal.taps, tap.i0, tap.i1);
        let pieces = top.chunks_exact(tile_w).zip(bottom.chunks_exact(tile_w));
        // `top`/`bottom` are [channel][tile column][x]; planes are [tile column][channel].
        for (k, (top_piece, bottom_piece)) in pieces.enumerate() {
            let (channel, tile_col) = (k / layout.cols, k % layout.cols);
            let plane = &mut planes[tile_col * channels + channel];
            let dst = &mut plane[local_y * tile_w..(local_y + 1) * tile_w];
            blend_rows(tap, top_piece, bottom_piece, dst);
        }
    }
}

/// Resizes every channel of `source` to the full size of `layout` and returns it tiled
/// (length `rows*cols*channels*tile_h*tile_w`), in parallel over bands of rows.
pub(crate) fn resize_to_tiles<S: RowSource>(source: &S, layout: TileLayout) -> Vec<f32> {
    let (in_h, in_w) = source.size();
    let vertical = LinearAxis::new(in_h, layout.out_h());
    let horizontal = LinearAxis::new(in_w, layout.out_w());
    let len = layout.rows * layout.cols * source.channels() * layout.tile_h * layout.tile_w;
    // Zero-filling megabytes that are overwritten anyway cost as much as the whole vertical pass
    // (the allocator hands back recycled memory, so calloc has to memset it).
    let mut out = Vec::with_capacity(len);
    let uninit = &mut out.spare_capacity_mut()[..len];
    let bands = split_into_bands(uninit, source.channels(), layout, layout.band_height());
    bands
        .into_par_iter()
        .for_each(|band| fill_band(source, &horizontal, &vertical, layout, band));
    // SAFETY: the bands partition the first `len` elements (`split_into_bands` hands out every
    // chunk of every plane), and `fill_band` writes every element of each band: one `blend_rows`
    // per output row of the band and per plane, each covering the full `tile_w` width.
    unsafe { out.set_len(len) };
    out
}

/// A planar float image `[channels, height, width]`.
struct PlanarF32<'a> {
    data: &'a [f32],
    shape: [usize; 3],
}

impl RowSource for PlanarF32<'_> {
    fn channels(&self) -> usize {
        self.shape[0]
    }

    fn size(&self) -> (usize, usize) {
        (self.shape[1], self.shape[2])
    }

    fn interpolate_row(&self, y: usize, taps: &[Tap], out: &mut [f32]) {
        let [_, h, w] = self.shape;
        let planes = self.data.chunks_exact(h * w);
        for (plane, out) in planes.zip(out.chunks_exact_mut(taps.len())) {
            let row = &plane[y * w..(y + 1) * w];
            interpolate_row(taps, out, |i| row[i]);
        }
    }
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
    let source = PlanarF32 {
        data: src,
        shape: [channels, in_h, in_w],
    };
    Some(resize_to_tiles(&source, layout))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PyTorch's source coordinate of one output sample, written out independently of
    /// [`LinearAxis`]: `(left, right, left weight, right weight)`.
    fn oracle_taps(dst: usize, n_in: usize, n_out: usize) -> (usize, usize, f32, f32) {
        if n_in == n_out {
            return (dst, dst, 1.0, 0.0);
        }
        let src = ((n_in as f32 / n_out as f32) * (dst as f32 + 0.5) - 0.5).max(0.0);
        let left = (src.floor() as usize).min(n_in - 1);
        let lambda = (src - left as f32).clamp(0.0, 1.0);
        (left, (left + 1).min(n_in - 1), 1.0 - lambda, lambda)
    }

    /// Deterministic, non-smooth test data (so any misplaced tap changes the result).
    fn data(len: usize) -> Vec<f32> {
        (0..len)
            .map(|i| ((i as u32).wrapping_mul(2_654_435_761) % 997) as f32 / 31.0 - 16.0)
            .collect()
    }

    /// Every element of a tiled resize against the per-pixel formula, to the bit.
    fn assert_tiles_match_formula(shape: [usize; 3], layout: TileLayout) {
        let [channels, in_h, in_w] = shape;
        let src = data(channels * in_h * in_w);
        let source = PlanarF32 { data: &src, shape };
        let out = resize_to_tiles(&source, layout);
        let (out_h, out_w) = (layout.out_h(), layout.out_w());
        assert_eq!(out.len(), channels * out_h * out_w);
        let plane = layout.tile_h * layout.tile_w;
        for (k, value) in out.iter().enumerate() {
            let (tile, within) = (k / (channels * plane), k % (channels * plane));
            let (channel, pixel) = (within / plane, within % plane);
            let y = (tile / layout.cols) * layout.tile_h + pixel / layout.tile_w;
            let x = (tile % layout.cols) * layout.tile_w + pixel % layout.tile_w;
            let (y0, y1, wy0, wy1) = oracle_taps(y, in_h, out_h);
            let (x0, x1, wx0, wx1) = oracle_taps(x, in_w, out_w);
            let at = |yy: usize, xx: usize| src[(channel * in_h + yy) * in_w + xx];
            let row = |yy: usize| at(yy, x0) * wx0 + at(yy, x1) * wx1;
            let expected = row(y0) * wy0 + row(y1) * wy1;
            assert_eq!(
                value.to_bits(),
                expected.to_bits(),
                "{shape:?} -> {layout:?}: channel {channel}, y {y}, x {x}"
            );
        }
    }

    #[test]
    fn edge_sizes_match_the_formula_in_every_tile_and_band() {
        let sizes = [(1, 1), (1, 9), (9, 1), (7, 5), (5, 7), (40, 3), (64, 64)];
        // Tile sides around the band height (16) and its multiples, so bands end mid-tile too;
        // together with `sizes` this covers upscales, downscales and equal sizes on each axis.
        let tiles = [
            (1, 1),
            (1, 13),
            (17, 1),
            (7, 5),
            (50, 37),
            (16, 16),
            (33, 65),
        ];
        for &(in_h, in_w) in &sizes {
            for &(tile_h, tile_w) in &tiles {
                for (rows, cols) in [(1, 1), (2, 3), (3, 1)] {
                    let layout = TileLayout {
                        rows,
                        cols,
                        tile_h,
                        tile_w,
                    };
                    assert_tiles_match_formula([2, in_h, in_w], layout);
                }
            }
        }
    }

    #[test]
    fn bands_partition_the_output() {
        let layout = TileLayout {
            rows: 2,
            cols: 3,
            tile_h: 50,
            tile_w: 7,
        };
        let mut out = vec![MaybeUninit::new(0f32); 2 * 3 * 3 * 50 * 7];
        let bands = split_into_bands(&mut out, 3, layout, 16);
        // 4 bands per tile row (16, 16, 16, 2 rows), each with 3 tile columns x 3 channels.
        let starts: Vec<usize> = bands.iter().map(|b| b.y0).collect();
        assert_eq!(starts, [0, 16, 32, 48, 50, 66, 82, 98]);
        for band in &bands {
            assert_eq!(band.planes.len(), 9);
            let rows = if band.y0 % 50 == 48 { 2 } else { 16 };
            assert!(band.planes.iter().all(|p| p.len() == rows * 7));
        }
        let covered: usize = bands.iter().flat_map(|b| &b.planes).map(|p| p.len()).sum();
        assert_eq!(covered, out_len(layout, 3));
    }

    fn out_len(layout: TileLayout, channels: usize) -> usize {
        layout.rows * layout.cols * channels * layout.tile_h * layout.tile_w
    }
}
