//! Matrix products on strided f32 slices, through the `gemm` crate (the one candle uses).
//!
//! `gemm::gemm` takes raw pointers; [`matmul_with`] checks that every element the product
//! reads or writes lies inside its slice before calling it, so a wrong shape is an error, in
//! release builds too, never an out-of-bounds access.

use candle_core::Result;

/// gemm's threads: those of the rayon pool we run in. (Not candle's `get_num_threads`, which
/// parses `/proc/cpuinfo` on every call: over a thousand reads per EfficientNet dream step.)
pub fn parallelism() -> gemm::Parallelism {
    let threads = rayon::current_num_threads();
    if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    }
}

/// A `rows x cols` matrix inside a slice: element `(i, j)` at `i * row_stride + j * col_stride`.
#[derive(Debug, Clone, Copy)]
pub struct Strides {
    pub row: usize,
    pub col: usize,
}

impl Strides {
    /// Row-major with rows `row` apart.
    pub const fn rows(row: usize) -> Self {
        Self { row, col: 1 }
    }

    /// Column-major with columns `col` apart (a row-major matrix read transposed).
    pub const fn cols(col: usize) -> Self {
        Self { row: 1, col }
    }

    /// Whether a `rows x cols` matrix with these strides fits in `len` elements.
    fn fits(self, (rows, cols): (usize, usize), len: usize) -> bool {
        if rows == 0 || cols == 0 {
            return true;
        }
        let last = (rows - 1)
            .checked_mul(self.row)
            .zip((cols - 1).checked_mul(self.col))
            .and_then(|(a, b)| a.checked_add(b));
        last.is_some_and(|last| last < len)
    }
}

/// `dst [m, n] = lhs [m, k] @ rhs [k, n]` on the rayon pool's threads.
pub fn matmul(
    dims: (usize, usize, usize),
    (dst, dst_strides): (&mut [f32], Strides),
    (lhs, lhs_strides): (&[f32], Strides),
    (rhs, rhs_strides): (&[f32], Strides),
) -> Result<()> {
    matmul_with(
        parallelism(),
        dims,
        (dst, dst_strides),
        (lhs, lhs_strides),
        (rhs, rhs_strides),
    )
}

/// [`matmul`] on the given threads (`Parallelism::None` inside an already parallel loop).
/// Fails, touching nothing, when a matrix does not fit in its slice.
pub fn matmul_with(
    parallelism: gemm::Parallelism,
    (m, n, k): (usize, usize, usize),
    (dst, dst_strides): (&mut [f32], Strides),
    (lhs, lhs_strides): (&[f32], Strides),
    (rhs, rhs_strides): (&[f32], Strides),
) -> Result<()> {
    if m == 0 || n == 0 {
        return Ok(());
    }
    let fits = dst_strides.fits((m, n), dst.len())
        && (k == 0 || lhs_strides.fits((m, k), lhs.len()) && rhs_strides.fits((k, n), rhs.len()));
    if !fits {
        candle_core::bail!(
            "matrix product {m}x{k} @ {k}x{n} does not fit its buffers ({}, {}, {})",
            lhs.len(),
            rhs.len(),
            dst.len()
        );
    }
    let stride =
        |s: usize| isize::try_from(s).map_err(|_| candle_core::Error::Msg("stride".into()));
    let (dst_rs, dst_cs) = (stride(dst_strides.row)?, stride(dst_strides.col)?);
    let (lhs_rs, lhs_cs) = (stride(lhs_strides.row)?, stride(lhs_strides.col)?);
    let (rhs_rs, rhs_cs) = (stride(rhs_strides.row)?, stride(rhs_strides.col)?);
    // SAFETY: every element gemm reads or writes is inside its slice (checked above: the last
    // one of each matrix is); dst is a `&mut` borrow, so it aliases neither lhs nor rhs.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_cs,
            dst_rs,
            false,
            lhs.as_ptr(),
            lhs_cs,
            lhs_rs,
            rhs.as_ptr(),
            rhs_cs,
            rhs_rs,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_and_transposed_reads() {
        // [2, 3] @ [3, 2]
        let a = [1f32, 2., 3., 4., 5., 6.];
        let b = [1f32, 0., 0., 1., 1., 1.];
        let mut c = [0f32; 4];
        let gemm_none = gemm::Parallelism::None;
        matmul_with(
            gemm_none,
            (2, 2, 3),
            (&mut c, Strides::rows(2)),
            (&a, Strides::rows(3)),
            (&b, Strides::rows(2)),
        )
        .unwrap();
        assert_eq!(c, [4., 5., 10., 11.]);
        // a^T [3, 2] @ [2, 1]: a read column-major.
        let mut d = [0f32; 3];
        matmul_with(
            gemm_none,
            (3, 1, 2),
            (&mut d, Strides::rows(1)),
            (&a, Strides::cols(3)),
            (&[1f32, 1.], Strides::rows(1)),
        )
        .unwrap();
        assert_eq!(d, [5., 7., 9.]);
    }

    #[test]
    fn a_shape_that_does_not_fit_is_an_error() {
        let a = [1f32; 6];
        let mut c = [0f32; 4];
        let err = matmul_with(
            gemm::Parallelism::None,
            (2, 2, 4),
            (&mut c, Strides::rows(2)),
            (&a, Strides::rows(4)),
            (&a, Strides::rows(2)),
        );
        assert!(err.is_err());
        assert_eq!(c, [0.0; 4]);
    }
}
