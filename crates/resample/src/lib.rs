//! PyTorch's antialiased bilinear resampling (`interpolate(..., mode="bilinear",
//! antialias=True)`, which torchvision's `Resize` runs) of interleaved RGB bytes into
//! planar f32, in plain Rust.
//!
//! A crate of its own so that it is built optimised even in transfer-lab's dev profile
//! (the crate itself builds at opt-level 1, where these loops ran 3x slower than the JPEG
//! decoding they follow). Separable: a horizontal pass over the source rows, then a
//! vertical one; each output pixel a normalised triangle-filter average whose support
//! widens with the downscale factor, as PIL's and PyTorch's.

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
/// computed as PyTorch's `_compute_index_ranges_weights` for bilinear antialias.
fn taps(in_len: usize, out_len: usize, first: usize, count: usize) -> Vec<Taps> {
    let scale = in_len as f64 / out_len as f64;
    let (support, invscale) = if scale >= 1.0 { (scale, 1.0 / scale) } else { (1.0, 1.0) };
    (first..first + count)
        .map(|i| {
            let center = scale * (i as f64 + 0.5);
            // Truncation toward zero, as C++'s static_cast<int64_t>.
            let lo = ((center - support + 0.5) as i64).max(0) as usize;
            let hi = ((center + support + 0.5) as i64).min(in_len as i64) as usize;
            let mut w: Vec<f64> =
                (lo..hi).map(|j| (1.0 - ((j as f64 - center + 0.5) * invscale).abs()).max(0.0)).collect();
            let total: f64 = w.iter().sum();
            if total > 0.0 {
                w.iter_mut().for_each(|v| *v /= total);
            }
            Taps { start: lo, weights: w.into_iter().map(|v| v as f32).collect() }
        })
        .collect()
}

/// Resamples `region` of the interleaved RGB image `px` (`width` pixels a row) as
/// `target` says, into `out`: planar `[3, size, size]` f32 in 0..=255.
pub fn resize_rgb(px: &[u8], width: usize, region: Region, target: Target, out: &mut [f32]) {
    let s = target.size;
    assert!(out.len() >= 3 * s * s, "output holds 3 x {s} x {s}");
    assert!(region.x + region.w <= width && (region.y + region.h) * width * 3 <= px.len(), "region inside the image");
    let mut xs = taps(region.w, target.full_w, target.left, s);
    if target.flip {
        xs.reverse();
    }
    let ys = taps(region.h, target.full_h, target.top, s);
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_to_one_and_a_flat_image_stays_flat() {
        for (n, m) in [(500, 224), (31, 64), (7, 7)] {
            for t in taps(n, m, 0, m) {
                assert!((t.weights.iter().sum::<f32>() - 1.0).abs() < 1e-5);
                assert!(t.start + t.weights.len() <= n);
            }
        }
        let px = vec![77u8; 50 * 30 * 3];
        let mut out = vec![0f32; 3 * 16 * 16];
        let region = Region { x: 3, y: 2, w: 40, h: 20 };
        resize_rgb(&px, 50, region, Target { full_h: 16, full_w: 32, top: 0, left: 8, size: 16, flip: true }, &mut out);
        assert!(out.iter().all(|v| (v - 77.0).abs() < 1e-3));
    }
}
