//! Bounded chart history: a run of a million steps still draws from a few hundred points.

/// Keeps at most `cap` points. When full, neighbouring pairs are merged (averaged) and
/// each stored point from then on stands for twice as many raw points, so the whole
/// history keeps one even resolution instead of old points being coarser than new ones.
#[derive(Debug, Clone)]
pub struct Series {
    points: Vec<(f64, f64)>,
    cap: usize,
    /// Raw points per stored point.
    stride: usize,
    /// Raw points not yet making up a whole stored point: (sum x, sum y, count).
    pending: (f64, f64, usize),
}

impl Series {
    /// `cap` is rounded up to an even number, at least 2.
    pub fn new(cap: usize) -> Self {
        let cap = cap.max(2).div_ceil(2) * 2;
        Series { points: Vec::with_capacity(cap), cap, stride: 1, pending: (0.0, 0.0, 0) }
    }

    pub fn push(&mut self, x: f64, y: f64) {
        if !x.is_finite() || !y.is_finite() {
            return;
        }
        let p = &mut self.pending;
        *p = (p.0 + x, p.1 + y, p.2 + 1);
        if p.2 < self.stride {
            return;
        }
        let n = p.2 as f64;
        self.points.push((p.0 / n, p.1 / n));
        self.pending = (0.0, 0.0, 0);
        if self.points.len() >= self.cap {
            self.halve();
        }
    }

    fn halve(&mut self) {
        self.points = self
            .points
            .chunks(2)
            .map(|c| {
                let n = c.len() as f64;
                (c.iter().map(|p| p.0).sum::<f64>() / n, c.iter().map(|p| p.1).sum::<f64>() / n)
            })
            .collect();
        self.stride *= 2;
    }

    /// Stored points plus the partial bucket, so the newest value is always visible.
    pub fn points(&self) -> Vec<(f64, f64)> {
        let mut v = self.points.clone();
        let p = self.pending;
        if p.2 > 0 {
            v.push((p.0 / p.2 as f64, p.1 / p.2 as f64));
        }
        v
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty() && self.pending.2 == 0
    }

    pub fn stride(&self) -> usize {
        self.stride
    }

    /// (min, max) of y over the stored points.
    pub fn y_range(&self) -> Option<(f64, f64)> {
        self.points().iter().map(|p| p.1).fold(None, |acc, y| match acc {
            None => Some((y, y)),
            Some((lo, hi)) => Some((lo.min(y), hi.max(y))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_bounded_and_keeps_the_shape() {
        let mut s = Series::new(64);
        for i in 0..100_000 {
            s.push(i as f64, i as f64 * 2.0);
        }
        let pts = s.points();
        assert!(pts.len() <= 65, "{}", pts.len());
        assert!(pts.len() >= 32, "{}", pts.len());
        // Merged points are averages: still on the line y = 2x, spanning the whole range.
        for p in &pts {
            assert!((p.1 - 2.0 * p.0).abs() < 1e-6, "{p:?}");
        }
        assert!(pts[0].0 < 2000.0 && pts.last().unwrap().0 > 98_000.0, "{pts:?}");
        assert!(s.stride() * 64 > 100_000 / 2, "stride {}", s.stride());
    }

    #[test]
    fn merging_pairs_averages_them() {
        let mut s = Series::new(4);
        for (x, y) in [(0.0, 1.0), (1.0, 3.0), (2.0, 5.0), (3.0, 7.0)] {
            s.push(x, y);
        }
        assert_eq!(s.points(), vec![(0.5, 2.0), (2.5, 6.0)]);
        s.push(4.0, 9.0);
        // A half-filled bucket is still shown.
        assert_eq!(s.points(), vec![(0.5, 2.0), (2.5, 6.0), (4.0, 9.0)]);
        assert_eq!(s.y_range(), Some((2.0, 9.0)));
    }

    #[test]
    fn non_finite_values_are_ignored() {
        let mut s = Series::new(8);
        s.push(0.0, f64::NAN);
        assert!(s.is_empty());
    }
}
