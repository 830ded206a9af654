//! Single-threaded f32 matrix products on raw strided operands, for kernels that split work
//! across rayon tasks themselves (each task runs its own small products).

use ::gemm::Parallelism;

/// A read-only matrix operand: its first element and the strides (in elements) between
/// consecutive rows and columns.
#[derive(Clone, Copy)]
pub(super) struct Operand {
    ptr: *const f32,
    row_stride: usize,
    col_stride: usize,
}

impl Operand {
    /// `data` read as a row-major matrix with `cols` columns.
    pub(super) fn rows(data: &[f32], cols: usize) -> Self {
        Self {
            ptr: data.as_ptr(),
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose of `data` read as a row-major matrix with `cols` columns (so
    /// `x · wᵀ` takes `Operand::transposed(w, in_dim)` as its right-hand side).
    pub(super) fn transposed(data: &[f32], cols: usize) -> Self {
        Self {
            ptr: data.as_ptr(),
            row_stride: 1,
            col_stride: cols,
        }
    }
}

/// `dst[m, n] = lhs[m, k] · rhs[k, n]` on the calling thread; `dst` rows are `dst_row_stride`
/// apart and are overwritten (never read).
///
/// # Safety
/// Every element the sizes and strides address must be valid: `lhs` and `rhs` for reads, `dst`
/// for writes, and `dst` must not overlap either operand.
pub(super) unsafe fn product(
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    dst_row_stride: usize,
    lhs: Operand,
    rhs: Operand,
) {
    ::gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_row_stride as isize,
        false,
        lhs.ptr,
        lhs.col_stride as isize,
        lhs.row_stride as isize,
        rhs.ptr,
        rhs.col_stride as isize,
        rhs.row_stride as isize,
        0.0,
        1.0,
        false,
        false,
        false,
        Parallelism::None,
    );
}
