//! Weighted k-nearest neighbours on L2-normalised features, as DINO evaluates frozen
//! features (Caron et al. 2021, `eval_knn.py`): the `k` most cosine-similar training rows
//! vote for their class with weight `exp(similarity / T)`.
//!
//! Similarities are batched matrix products on the features' device; the queries are
//! taken in batches so that one batch's `[B, N]` similarity matrix stays under
//! [`KnnConfig::max_batch_bytes`].
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KnnConfig {
    pub k: usize,
    pub temperature: f64,
    /// Bytes one batch's similarity matrix may take.
    pub max_batch_bytes: usize,
}

impl Default for KnnConfig {
    fn default() -> Self {
        KnnConfig { k: 20, temperature: 0.07, max_batch_bytes: 256 << 20 }
    }
}

impl KnnConfig {
    /// Checks the settings against a bank of `bank_rows` training rows.
    pub fn validate(&self, bank_rows: usize) -> Result<()> {
        let bad = |reason: String| Err(Error::invalid("k-NN settings", reason));
        if self.k == 0 {
            return bad("--k 0: at least one neighbour is needed".into());
        }
        if self.k > bank_rows {
            return bad(format!(
                "--k {} is larger than the {bank_rows} training rows the neighbours come from",
                self.k
            ));
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return bad(format!("--temperature {}: must be > 0", self.temperature));
        }
        Ok(())
    }
}

/// What the votes say for each query.
#[derive(Debug)]
pub struct Votes {
    /// `[M]` i64.
    pub predictions: Tensor,
    /// `[M, C]`: each row's votes, normalised to sum to one.
    pub probabilities: Tensor,
}

impl Votes {
    /// Accuracy and mean negative log of the true class's vote share (floored at 1e-12).
    pub fn score(&self, labels: &Tensor) -> (f64, f64) {
        let y = labels.to_device(self.predictions.device());
        let acc = self.predictions.eq_tensor(&y).to_kind(Kind::Double).mean(Kind::Double).double_value(&[]);
        let p = self.probabilities.gather(1, &y.unsqueeze(1), false).clamp_min(1e-12);
        (acc, -p.log().mean(Kind::Double).double_value(&[]))
    }
}

/// Rows scaled to unit L2 norm (zero rows stay zero).
fn normalize(x: &Tensor) -> Tensor {
    let norm = x.norm_scalaropt_dim(2, [1i64].as_slice(), true).clamp_min(1e-12);
    x / norm
}

/// Classifies `queries` `[M, D]` by the bank `[N, D]` with labels `[N]` (classes `0..classes`).
pub fn classify(bank: &Tensor, bank_labels: &Tensor, queries: &Tensor, classes: i64, cfg: &KnnConfig) -> Result<Votes> {
    let (n, m) = (bank.size()[0], queries.size()[0]);
    cfg.validate(n as usize)?;
    if bank.size()[1] != queries.size()[1] {
        return Err(Error::invalid(
            "k-NN features",
            format!(
                "training rows are {:?} but queries {:?}: a different layer or backbone?",
                bank.size(),
                queries.size()
            ),
        ));
    }
    tch::no_grad(|| {
        let device = queries.device();
        let bank = normalize(&bank.to_device(device));
        let labels = bank_labels.to_device(device);
        let per_row = (n as usize * 4).max(1);
        let batch = (cfg.max_batch_bytes / per_row).clamp(1, m.max(1) as usize) as i64;
        let (mut preds, mut probs) = (vec![], vec![]);
        let mut start = 0;
        while start < m {
            let len = batch.min(m - start);
            let q = normalize(&queries.narrow(0, start, len));
            let sim = q.matmul(&bank.tr());
            let (top, idx) = sim.topk(cfg.k as i64, 1, true, true);
            let voters = labels.index_select(0, &idx.view([-1])).view([len, cfg.k as i64]);
            let weights = (top / cfg.temperature).exp();
            let votes = Tensor::zeros([len, classes], (weights.kind(), device)).scatter_add(1, &voters, &weights);
            let total = votes.sum_dim_intlist([1i64].as_slice(), true, votes.kind());
            preds.push(votes.argmax(1, false));
            probs.push(votes / total);
            start += len;
        }
        if m == 0 {
            return Ok(Votes {
                predictions: Tensor::zeros([0], (Kind::Int64, device)),
                probabilities: Tensor::zeros([0, classes], (queries.kind(), device)),
            });
        }
        Ok(Votes { predictions: Tensor::cat(&preds, 0), probabilities: Tensor::cat(&probs, 0) })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// The definition, one query at a time in f64: sort by cosine similarity, sum the
    /// weights of the top k per class.
    fn brute_force(bank: &[Vec<f64>], labels: &[i64], q: &[f64], classes: usize, k: usize, t: f64) -> usize {
        let unit = |v: &[f64]| {
            let n = v.iter().map(|a| a * a).sum::<f64>().sqrt().max(1e-12);
            v.iter().map(|a| a / n).collect::<Vec<_>>()
        };
        let q = unit(q);
        let mut sims: Vec<(f64, usize)> =
            bank.iter().enumerate().map(|(i, b)| (unit(b).iter().zip(&q).map(|(a, b)| a * b).sum(), i)).collect();
        sims.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut votes = vec![0.0; classes];
        for &(s, i) in &sims[..k] {
            votes[labels[i] as usize] += (s / t).exp();
        }
        (0..classes).max_by(|&a, &b| votes[a].total_cmp(&votes[b])).unwrap()
    }

    #[test]
    fn matches_brute_force_in_small_batches() {
        tch::manual_seed(5);
        let bank = Tensor::randn([300, 16], (Kind::Float, Device::Cpu));
        let labels = Tensor::randint(4, [300], (Kind::Int64, Device::Cpu));
        let queries = Tensor::randn([57, 16], (Kind::Float, Device::Cpu));
        // 7 query rows per batch: several batches and a ragged last one.
        let cfg = KnnConfig { k: 9, temperature: 0.1, max_batch_bytes: 300 * 4 * 7 };
        let votes = classify(&bank, &labels, &queries, 4, &cfg).unwrap();
        let rows = |t: &Tensor| Vec::<Vec<f64>>::try_from(&t.to_kind(Kind::Double)).unwrap();
        let (b, q) = (rows(&bank), rows(&queries));
        let l = Vec::<i64>::try_from(&labels).unwrap();
        let got = Vec::<i64>::try_from(&votes.predictions).unwrap();
        for (i, qi) in q.iter().enumerate() {
            assert_eq!(got[i] as usize, brute_force(&b, &l, qi, 4, 9, 0.1), "query {i}");
        }
        let sums = votes.probabilities.sum_dim_intlist([1i64].as_slice(), false, Kind::Double);
        assert!((sums - 1.0).abs().max().double_value(&[]) < 1e-5);
    }

    #[test]
    fn bad_settings_are_named() {
        let bank = Tensor::randn([5, 3], (Kind::Float, Device::Cpu));
        let labels = Tensor::from_slice(&[0i64, 1, 0, 1, 0]);
        let cfg = KnnConfig { k: 6, ..Default::default() };
        let err = classify(&bank, &labels, &bank, 2, &cfg).unwrap_err().to_string();
        assert!(err.contains("--k 6") && err.contains("5 training rows"), "{err}");
        let cfg = KnnConfig { k: 2, temperature: 0.0, ..Default::default() };
        assert!(classify(&bank, &labels, &bank, 2, &cfg).unwrap_err().to_string().contains("temperature"));
        let other = Tensor::randn([2, 4], (Kind::Float, Device::Cpu));
        let cfg = KnnConfig { k: 2, ..Default::default() };
        assert!(classify(&bank, &labels, &other, 2, &cfg).unwrap_err().to_string().contains("queries"));
    }
}
