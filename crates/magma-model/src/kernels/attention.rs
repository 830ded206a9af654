//! Fused causal attention for the CPU: scores, causal softmax and the weighted sum of values
//! in one parallel pass, without materialising the `[heads, queries, keys]` score tensor.
//!
//! The plain candle path computes every query-key score (including the masked upper
//! triangle), writes the full score tensor, masks and normalises it in separate passes and
//! then transposes the result back to token-major order. Here each task takes one query head
//! and a block of [`QUERY_BLOCK`] queries, multiplies them only with the keys the block may
//! see (about half the products of a long prefill), normalises the rows in place and writes
//! its share of the output directly in `[batch, queries, heads·head_dim]` order.

use super::elementwise::exp_approx;
use super::gemm::{product, Operand};
use super::simd::dispatch;
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::cell::RefCell;

/// Queries per task: the block's scores (`QUERY_BLOCK × keys`) stay in L2 for prompts of a few
/// thousand tokens, and a 1117-token prefill with 12 heads still yields ~200 tasks to balance.
const QUERY_BLOCK: usize = 64;

/// `softmax(scale · q·kᵀ + causal_mask) · v` for every query head, token-major output.
///
/// `q` is `[batch, heads, queries, head_dim]`, `k` and `v` are
/// `[batch, kv_heads, start + queries, head_dim]`: query `i` sits at position `start + i` and
/// sees keys `0..=start + i`. Query head `h` reads key/value head `h / (heads / kv_heads)`
/// (HF's `repeat_kv` order). Returns `[batch, queries, heads · head_dim]`.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use magma_model::kernels::attention::causal_attention;
/// let dev = Device::Cpu;
/// // One head, head_dim 1: query 0 sees value 1.0 only; query 1 weighs both keys equally.
/// let q = Tensor::new(&[0.0f32, 0.0], &dev)?.reshape((1, 1, 2, 1))?;
/// let k = Tensor::new(&[5.0f32, 5.0], &dev)?.reshape((1, 1, 2, 1))?;
/// let v = Tensor::new(&[1.0f32, 3.0], &dev)?.reshape((1, 1, 2, 1))?;
/// let out = causal_attention(&q, &k, &v, 0)?.flatten_all()?.to_vec1::<f32>()?;
/// assert_eq!(out, [1.0, 2.0]);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn causal_attention(q: &Tensor, k: &Tensor, v: &Tensor, start: usize) -> Result<Tensor> {
    let (_, heads, queries, head_dim) = q.dims4()?;
    let (_, kv_heads, keys, _) = k.dims4()?;
    if k.dims() != v.dims() || kv_heads == 0 || heads % kv_heads != 0 || keys != start + queries {
        candle_core::bail!(
            "causal-attention: q {:?}, k {:?}, v {:?} and start {start} do not fit together",
            q.dims(),
            k.dims(),
            v.dims()
        )
    }
    let scale = 1.0 / (head_dim as f64).sqrt();
    if !q.device().is_cpu() || q.dtype() != DType::F32 {
        return fallback(q, k, v, start, scale);
    }
    q.contiguous()?.apply_op3_no_bwd(
        &rows_contiguous(k)?,
        &rows_contiguous(v)?,
        &CausalAttention {
            start,
            scale: scale as f32,
        },
    )
}

/// `t` itself when each `[.., position, head_dim]` row is contiguous (a KV-cache view is),
/// else a contiguous copy.
fn rows_contiguous(t: &Tensor) -> Result<Tensor> {
    let stride = t.stride();
    if stride[3] == 1 && stride[2] == t.dim(3)? {
        Ok(t.clone())
    } else {
        t.contiguous()
    }
}

/// The same arithmetic from plain candle ops (GPU and non-f32 tensors).
fn fallback(q: &Tensor, k: &Tensor, v: &Tensor, start: usize, scale: f64) -> Result<Tensor> {
    let (b, heads, queries, head_dim) = q.dims4()?;
    let (_, kv_heads, keys, _) = k.dims4()?;
    // Query heads h·rep..(h+1)·rep share key/value head h: fold them into the row axis.
    let rep = heads / kv_heads;
    let q = q.reshape((b, kv_heads, rep * queries, head_dim))?;
    let scores = (q.matmul(&k.t()?)? * scale)?;
    let mask: Vec<f32> = (0..rep * queries)
        .flat_map(|r| {
            let visible = start + r % queries + 1;
            (0..keys).map(move |j| if j < visible { 0.0 } else { f32::NEG_INFINITY })
        })
        .collect();
    let mask = Tensor::from_vec(mask, (rep * queries, keys), q.device())?.to_dtype(q.dtype())?;
    candle_nn::ops::softmax_last_dim(&scores.broadcast_add(&mask)?)?
        .matmul(v)?
        .reshape((b, heads, queries, head_dim))?
        .transpose(1, 2)?
        .reshape((b, queries, heads * head_dim))
}

struct CausalAttention {
    start: usize,
    scale: f32,
}

/// A view of `[batch, heads, positions, head_dim]` f32 data whose rows are contiguous.
#[derive(Clone, Copy)]
struct Rows<'a> {
    data: &'a [f32],
    batch_stride: usize,
    head_stride: usize,
}

impl<'a> Rows<'a> {
    fn new(storage: &'a CpuStorage, layout: &Layout, op: &str) -> Result<Self> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("{op}: expected f32")
        };
        let (stride, dims) = (layout.stride(), layout.dims());
        let (positions, head_dim) = (dims[2], dims[3]);
        if stride[3] != 1 || stride[2] != head_dim {
            candle_core::bail!("{op}: rows of {dims:?} are not contiguous (strides {stride:?})")
        }
        // The last element read must be in bounds; everything the kernel reads lies below it.
        let extent = layout.start_offset()
            + (dims[0].saturating_sub(1)) * stride[0]
            + (dims[1].saturating_sub(1)) * stride[1]
            + positions * head_dim;
        if extent > data.len() {
            candle_core::bail!("{op}: layout {dims:?}/{stride:?} exceeds its storage")
        }
        Ok(Self {
            data: &data[layout.start_offset()..extent],
            batch_stride: stride[0],
            head_stride: stride[1],
        })
    }

    /// The first `positions` rows of (batch, head), as one `[positions, head_dim]` slice.
    fn head(&self, batch: usize, head: usize, positions: usize, head_dim: usize) -> &'a [f32] {
        let at = batch * self.batch_stride + head * self.head_stride;
        &self.data[at..at + positions * head_dim]
    }
}

impl CustomOp3 for CausalAttention {
    fn name(&self) -> &'static str {
        "causal-attention"
    }

    fn cpu_fwd(
        &self,
        q_storage: &CpuStorage,
        q_layout: &Layout,
        k_storage: &CpuStorage,
        k_layout: &Layout,
        v_storage: &CpuStorage,
        v_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (batch, heads, queries, head_dim) = q_layout.shape().dims4()?;
        let kv_heads = k_layout.dims()[1];
        let rep = heads / kv_heads;
        let q = Rows::new(q_storage, q_layout, self.name())?;
        let k = Rows::new(k_storage, k_layout, self.name())?;
        let v = Rows::new(v_storage, v_layout, self.name())?;
        let width = heads * head_dim;
        let mut out = vec![0f32; batch * queries * width];
        let blocks = queries.div_ceil(QUERY_BLOCK);
        let out_ptr = SendPtr(out.as_mut_ptr());
        (0..batch * heads * blocks)
            .into_par_iter()
            .for_each(|task| {
                let (bh, block) = (task / blocks, task % blocks);
                let (b, h) = (bh / heads, bh % heads);
                let first = block * QUERY_BLOCK;
                let rows = QUERY_BLOCK.min(queries - first);
                let keys = self.start + first + rows;
                let q_block = &q.head(b, h, queries, head_dim)[first * head_dim..];
                let task = BlockTask {
                    q: &q_block[..rows * head_dim],
                    k: k.head(b, h / rep, keys, head_dim),
                    v: v.head(b, h / rep, keys, head_dim),
                    head_dim,
                    first_visible: self.start + first + 1,
                    scale: self.scale,
                };
                // SAFETY: this task alone writes rows first..first+rows of head h in batch b, i.e.
                // `rows` runs of `head_dim` floats at stride `width` starting here; the runs of
                // different tasks are disjoint and all lie inside `out`, which outlives the loop.
                let dst = unsafe {
                    out_ptr
                        .get()
                        .add((b * queries + first) * width + h * head_dim)
                };
                task.run(dst, width);
            });
        Ok((CpuStorage::F32(out), Shape::from((batch, queries, width))))
    }
}

/// One query head's block of queries against the keys it may see.
struct BlockTask<'a> {
    /// `[rows, head_dim]` queries.
    q: &'a [f32],
    /// `[keys, head_dim]` keys and values; the last query of the block sees all of them.
    k: &'a [f32],
    v: &'a [f32],
    head_dim: usize,
    /// Keys visible to the block's first query (each later query sees one more).
    first_visible: usize,
    scale: f32,
}

thread_local! {
    /// Per-thread score buffer, reused across tasks and layers.
    static SCORES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

impl BlockTask<'_> {
    /// Writes the block's `[rows, head_dim]` output at `dst` with row stride `dst_stride`.
    fn run(&self, dst: *mut f32, dst_stride: usize) {
        let d = self.head_dim;
        let rows = self.q.len() / d;
        let keys = self.k.len() / d;
        SCORES.with_borrow_mut(|scores| {
            scores.clear();
            scores.resize(rows * keys, 0.0);
            // SAFETY (both products): q holds rows×d, k and v keys×d, scores rows×keys
            // elements, as the operands describe; `dst` is valid for `rows` rows of `d` floats at
            // stride `dst_stride` (the caller's contract) and overlaps no operand.
            // scores[rows, keys] = q · kᵀ
            unsafe {
                product(
                    (rows, keys, d),
                    scores.as_mut_ptr(),
                    keys,
                    Operand::rows(self.q, d),
                    Operand::transposed(self.k, d),
                )
            };
            for (r, row) in scores.chunks_exact_mut(keys).enumerate() {
                let visible = (self.first_visible + r).min(keys);
                let (seen, masked) = row.split_at_mut(visible);
                dispatch(|| softmax_in_place(seen, self.scale));
                masked.fill(0.0);
            }
            // out[rows, d] = probabilities · v
            unsafe {
                product(
                    (rows, d, keys),
                    dst,
                    dst_stride,
                    Operand::rows(scores, keys),
                    Operand::rows(self.v, d),
                )
            };
        });
    }
}

/// A raw output pointer that rayon tasks may share (each writes its own disjoint rows).
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: only used for disjoint writes, see `cpu_fwd`.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// A method (not field access) so closures capture the whole `Send` wrapper.
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// `row = softmax(scale · row)`.
#[inline(always)]
fn softmax_in_place(row: &mut [f32], scale: f32) {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s)) * scale;
    let mut sum = 0f32;
    for s in row.iter_mut() {
        *s = exp_approx(*s * scale - max);
        sum += *s;
    }
    let inv = 1.0 / sum;
    for s in row.iter_mut() {
        *s *= inv;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn max_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
        (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()
    }

    /// The fused kernel against the candle-ops fallback: GQA, a cache offset, several query
    /// blocks (one partial) and keys read through a strided KV-cache view.
    #[test]
    fn matches_plain_ops_with_gqa_cache_offset_and_strided_keys() -> Result<()> {
        let dev = Device::Cpu;
        let (b, heads, kv_heads, d, start, queries) = (2, 6, 2, 8, 5, 2 * QUERY_BLOCK + 7);
        let keys = start + queries;
        let q = Tensor::randn(0f32, 1.0, (b, heads, queries, d), &dev)?;
        // Keys and values live in a larger buffer (as in the KV cache) and are narrowed.
        let buffer_k = Tensor::randn(0f32, 1.0, (b, kv_heads, keys + 40, d), &dev)?;
        let buffer_v = Tensor::randn(0f32, 1.0, (b, kv_heads, keys + 40, d), &dev)?;
        let k = buffer_k.narrow(2, 0, keys)?;
        let v = buffer_v.narrow(2, 0, keys)?;
        assert!(!k.is_contiguous());
        let fused = causal_attention(&q, &k, &v, start)?;
        let plain = fallback(&q, &k, &v, start, 1.0 / (d as f64).sqrt())?;
        assert_eq!(fused.dims(), &[b, queries, heads * d]);
        let diff = max_diff(&fused, &plain)?;
        assert!(diff < 1e-5, "max difference {diff}");
        Ok(())
    }

    /// A single decode step (one query that sees every cached key).
    #[test]
    fn single_query_sees_every_key() -> Result<()> {
        let dev = Device::Cpu;
        let (heads, kv_heads, d, start) = (4, 4, 16, 30);
        let q = Tensor::randn(0f32, 1.0, (1, heads, 1, d), &dev)?;
        let k = Tensor::randn(0f32, 1.0, (1, kv_heads, start + 1, d), &dev)?;
        let v = Tensor::randn(0f32, 1.0, (1, kv_heads, start + 1, d), &dev)?;
        let fused = causal_attention(&q, &k, &v, start)?;
        let plain = fallback(&q, &k, &v, start, 0.25)?;
        assert!(max_diff(&fused, &plain)? < 1e-5);
        Ok(())
    }

    #[test]
    fn mismatched_shapes_are_an_error() -> Result<()> {
        let dev = Device::Cpu;
        let q = Tensor::zeros((1, 3, 2, 4), DType::F32, &dev)?;
        let k = Tensor::zeros((1, 2, 2, 4), DType::F32, &dev)?; // 3 heads over 2 kv heads
        let err = causal_attention(&q, &k, &k, 0).unwrap_err().to_string();
        assert!(err.contains("do not fit"), "{err}");
        Ok(())
    }
}
