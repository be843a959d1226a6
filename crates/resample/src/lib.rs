//! PyTorch's antialiased bilinear and bicubic resampling (`interpolate(..., mode="bilinear"
//! | "bicubic", antialias=True, align_corners=False)`, which torchvision's `Resize` runs) of
//! interleaved RGB bytes into planar f32, in plain Rust.
//!
//! A crate of its own so that it is built optimised even in transfer-lab's dev profile
//! (the crate itself builds at opt-level 1, where these loops ran 3x slower than the JPEG
//! decoding they follow). Separable: a horizontal pass over the source rows, then a
//! vertical one; each output pixel a normalised average under the filter (triangle, or
//! Keys' cubic with a = -0.5), whose support widens with the downscale factor, as PIL's
//! and PyTorch's.
//!
//! Clamping: bilinear weights are convex, so its results stay in 0..=255 by themselves.
//! Bicubic's negative lobes overshoot near edges; this crate clamps each pass to 0..=255
//! and does not round. torchvision's evaluation transform on decoded uint8 images (a
//! uint8 tensor through libtorch's native uint8 kernel, or a PIL image) keeps the
//! intermediate and the result as uint8, i.e. rounded and clamped after each pass;
//! clamping both passes matches it to within its rounding, where the unclamped float
//! result (what `interpolate` returns for float input) can be tens of levels off at sharp
//! edges. Rounding is left out, as for bilinear, to keep the fraction.

/// The resampling filter; both antialiased when shrinking.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Filter {
    /// Triangle filter, support 1 (x the downscale factor).
    #[default]
    Bilinear,
    /// Keys' cubic convolution with a = -0.5 (PyTorch's antialiased bicubic and PIL's),
    /// support 2 (x the downscale factor); results clamped to 0..=255.
    Bicubic,
}

impl Filter {
    /// Half the filter's width at scale 1: PyTorch's `interp_size / 2`.
    fn support(self) -> f64 {
        match self {
            Filter::Bilinear => 1.0,
            Filter::Bicubic => 2.0,
        }
    }

    /// PyTorch's `aa_filter` of `HelperInterpLinear` / `HelperInterpCubic`.
    fn weight(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Filter::Bilinear => (1.0 - x).max(0.0),
            Filter::Bicubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A
                } else {
                    0.0
                }
            }
        }
    }

    /// Clamping after each pass (see the crate's documentation).
    fn clamps(self) -> bool {
        self == Filter::Bicubic
    }
}

/// A source region: the image's pixels `x..x + w` by `y..y + h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub x: usize,
    pub y: usize,
    pub w: usize,
    pub h: usize,
}

/// The output: `region` resized to `full_h` x `full_w`, of which the `size` x `size`
/// window at (`top`, `left`) is kept, mirrored left-right if `flip`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub full_h: usize,
    pub full_w: usize,
    pub top: usize,
    pub left: usize,
    pub size: usize,
    pub flip: bool,
}

/// One output pixel's source window along an axis: first index and normalised weights.
struct Taps {
    start: usize,
    weights: Vec<f32>,
}

/// Taps of outputs `first..first + count` when `in_len` is resized to `out_len`,
/// computed as PyTorch's `_compute_index_ranges_weights` with antialias.
fn taps(filter: Filter, in_len: usize, out_len: usize, first: usize, count: usize) -> Vec<Taps> {
    let scale = in_len as f64 / out_len as f64;
    let (support, invscale) =
        if scale >= 1.0 { (filter.support() * scale, 1.0 / scale) } else { (filter.support(), 1.0) };
    (first..first + count)
        .map(|i| {
            let center = scale * (i as f64 + 0.5);
            // Truncation toward zero, as C++'s static_cast<int64_t>.
            let lo = ((center - support + 0.5) as i64).max(0) as usize;
            let hi = ((center + support + 0.5) as i64).min(in_len as i64) as usize;
            let mut w: Vec<f64> = (lo..hi).map(|j| filter.weight((j as f64 - center + 0.5) * invscale)).collect();
            let total: f64 = w.iter().sum();
            if total > 0.0 {
                w.iter_mut().for_each(|v| *v /= total);
            }
            Taps { start: lo, weights: w.into_iter().map(|v| v as f32).collect() }
        })
        .collect()
}

/// Resamples `region` of the interleaved RGB image `px` (`width` pixels a row) as
/// `target` says, with `filter`, into `out`: planar `[3, size, size]` f32 in 0..=255.
pub fn resize_rgb(px: &[u8], width: usize, region: Region, target: Target, filter: Filter, out: &mut [f32]) {
    let s = target.size;
    assert!(out.len() >= 3 * s * s, "output holds 3 x {s} x {s}");
    assert!(region.x + region.w <= width && (region.y + region.h) * width * 3 <= px.len(), "region inside the image");
    let mut xs = taps(filter, region.w, target.full_w, target.left, s);
    if target.flip {
        xs.reverse();
    }
    let ys = taps(filter, region.h, target.full_h, target.top, s);
    let (y0, y1) = (ys[0].start, ys.iter().map(|t| t.start + t.weights.len()).max().unwrap_or(0));
    let rows = y1 - y0;
    // Horizontal pass over only the source rows some output row reads, into three planes.
    let mut tmp = vec![0f32; 3 * rows * s];
    {
        let (rp, rest) = tmp.split_at_mut(rows * s);
        let (gp, bp) = rest.split_at_mut(rows * s);
        for (r, ((r_out, g_out), b_out)) in
            rp.chunks_exact_mut(s).zip(gp.chunks_exact_mut(s)).zip(bp.chunks_exact_mut(s)).enumerate()
        {
            let y = region.y + y0 + r;
            let row = &px[(y * width + region.x) * 3..(y * width + region.x + region.w) * 3];
            for (ox, t) in xs.iter().enumerate() {
                let src = &row[t.start * 3..(t.start + t.weights.len()) * 3];
                let (mut r, mut g, mut b) = (0f32, 0f32, 0f32);
                for (p, &wt) in src.chunks_exact(3).zip(&t.weights) {
                    r += wt * p[0] as f32;
                    g += wt * p[1] as f32;
                    b += wt * p[2] as f32;
                }
                r_out[ox] = r;
                g_out[ox] = g;
                b_out[ox] = b;
            }
        }
    }
    if filter.clamps() {
        tmp.iter_mut().for_each(|v| *v = v.clamp(0.0, 255.0));
    }
    // Vertical pass: each output row a weighted sum of whole rows.
    for (plane, dst) in tmp.chunks_exact(rows * s).zip(out.chunks_exact_mut(s * s)) {
        for (drow, t) in dst.chunks_exact_mut(s).zip(&ys) {
            drow.fill(0.0);
            let first = (t.start - y0) * s;
            for (src, &wt) in plane[first..first + t.weights.len() * s].chunks_exact(s).zip(&t.weights) {
                for (d, v) in drow.iter_mut().zip(src) {
                    *d += wt * v;
                }
            }
            if filter.clamps() {
                drow.iter_mut().for_each(|v| *v = v.clamp(0.0, 255.0));
            }
        }
    }
}

#[cfg(test)]
#[rustfmt::skip]
mod reference;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_to_one_and_a_flat_image_stays_flat() {
        for filter in [Filter::Bilinear, Filter::Bicubic] {
            for (n, m) in [(500, 224), (31, 64), (7, 7)] {
                for t in taps(filter, n, m, 0, m) {
                    assert!((t.weights.iter().sum::<f32>() - 1.0).abs() < 1e-5);
                    assert!(t.start + t.weights.len() <= n);
                }
            }
            let px = vec![77u8; 50 * 30 * 3];
            let mut out = vec![0f32; 3 * 16 * 16];
            let region = Region { x: 3, y: 2, w: 40, h: 20 };
            let target = Target { full_h: 16, full_w: 32, top: 0, left: 8, size: 16, flip: true };
            resize_rgb(&px, 50, region, target, filter, &mut out);
            assert!(out.iter().all(|v| (v - 77.0).abs() < 1e-3), "{filter:?}");
        }
    }

    /// The images of tests/fixtures/gen/make_resample_reference.py, interleaved RGB.
    fn image(w: usize, h: usize, pattern: &str) -> Vec<u8> {
        let mut px = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for x in 0..w {
                let rgb = match pattern {
                    "smooth" => [x * 5 + y * 3 + 20, 200 - x * 4 - y * 2, 90 + x * 2 - y],
                    "edges" => [(x / 2 % 2) * 255, (y / 2 % 2) * 255, ((x + y) / 3 % 2) * 255],
                    _ => [(x * 7 + y * 3) % 256, (x * x + y) % 256, ((x ^ y) * 5) % 256],
                };
                px.extend(rgb.map(|v| v as u8));
            }
        }
        px
    }

    /// PyTorch's numbers for one case: (name, (w, h), pattern, (full_h, full_w), top, left,
    /// size, clamped per pass, float in one call, uint8 kernel).
    type Case = (
        &'static str,
        (usize, usize),
        &'static str,
        (usize, usize),
        usize,
        usize,
        usize,
        &'static [f32],
        &'static [f32],
        &'static [f32],
    );

    fn cases() -> Vec<Case> {
        use reference::*;
        vec![
            ("down", (23, 17), "wrap", (5, 7), 0, 1, 5, &DOWN_BICUBIC, &DOWN_FLOAT, &DOWN_UINT8),
            ("up", (6, 5), "wrap", (9, 11), 0, 1, 9, &UP_BICUBIC, &UP_FLOAT, &UP_UINT8),
            ("mixed", (20, 4), "wrap", (9, 9), 0, 0, 9, &MIXED_BICUBIC, &MIXED_FLOAT, &MIXED_UINT8),
            (
                "smooth_down",
                (23, 17),
                "smooth",
                (6, 8),
                0,
                1,
                6,
                &SMOOTH_DOWN_BICUBIC,
                &SMOOTH_DOWN_FLOAT,
                &SMOOTH_DOWN_UINT8,
            ),
            ("edges_up", (8, 7), "edges", (13, 15), 0, 1, 13, &EDGES_UP_BICUBIC, &EDGES_UP_FLOAT, &EDGES_UP_UINT8),
        ]
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    #[test]
    fn bicubic_matches_pytorch_antialiased_bicubic() {
        for (name, (w, h), pattern, (full_h, full_w), top, left, size, clamped, float, uint8) in cases() {
            let px = image(w, h, pattern);
            let mut out = vec![0f32; 3 * size * size];
            let target = Target { full_h, full_w, top, left, size, flip: false };
            resize_rgb(&px, w, Region { x: 0, y: 0, w, h }, target, Filter::Bicubic, &mut out);
            // PyTorch's float result with each pass clamped: the same arithmetic.
            let d = max_diff(&out, clamped);
            assert!(d < 1e-3, "{name}: {d} from PyTorch's bicubic (clamped per pass)");
            assert!(out.iter().all(|v| (0.0..=255.0).contains(v)), "{name}");
            // Where nothing overshoots, exactly `interpolate` on the float image.
            if pattern == "smooth" {
                let d = max_diff(&out, float);
                assert!(d < 1e-3, "{name}: {d} from PyTorch's float bicubic");
            }
            // Within rounding of libtorch's uint8 kernel (torchvision on decoded images),
            // which the unclamped float result is not near sharp edges.
            let d = max_diff(&out, uint8);
            assert!(d <= 1.0, "{name}: {d} from PyTorch's uint8 bicubic");
            if name == "edges_up" {
                assert!(max_diff(float, uint8) > 30.0, "the case overshoots");
            }
        }
    }

    #[test]
    fn bicubic_is_keys_a_minus_half_and_widens_when_shrinking() {
        let f = Filter::Bicubic;
        assert_eq!(f.weight(0.0), 1.0);
        for x in [1.0, 2.0, 2.5, -1.0] {
            assert_eq!(f.weight(x), 0.0, "{x}");
        }
        assert!((f.weight(0.5) - 0.5625).abs() < 1e-12 && (f.weight(1.5) + 0.0625).abs() < 1e-12);
        // Upscaling: 4 taps; shrinking 3x: 4 x 3 = 12 taps in the middle.
        assert_eq!(taps(f, 10, 20, 10, 1)[0].weights.len(), 4);
        assert_eq!(taps(f, 60, 20, 10, 1)[0].weights.len(), 12);
        assert_eq!(taps(Filter::Bilinear, 60, 20, 10, 1)[0].weights.len(), 6);
    }
}
