//! Run-time SIMD dispatch for the element-wise loops, and the element-wise loops the other
//! kernels share.
//!
//! The crate is built for any x86-64, so without help its loops vectorise only SSE2-wide (4
//! floats). [`multiversion!`] compiles a function's body three times (AVX-512F, AVX2+FMA,
//! baseline) and picks the best the CPU has at run time.

/// Defines a function whose body is compiled three times, for AVX-512F, for AVX2+FMA and for
/// the baseline, and picks at run time the best the CPU has: our element-wise loops then
/// vectorise 16 or 8 floats wide instead of SSE2's 4 (the crate is built for any x86-64).
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn avx512($($arg: $ty),*) {
                    body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) {
                    body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has the features `avx512` was compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: as above, for `avx2`.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}
pub(crate) use multiversion;

multiversion! {
    /// `dst += a * src`, element-wise.
    pub(crate) fn axpy(dst: &mut [f32], a: f32, src: &[f32]) {
        for (d, &x) in dst.iter_mut().zip(src) {
            *d += a * x;
        }
    }
}

multiversion! {
    /// `dst += src`, element-wise.
    pub(crate) fn add_assign(dst: &mut [f32], src: &[f32]) {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d += s;
        }
    }
}
