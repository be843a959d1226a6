//! Accuracy, per-class precision/recall/F1, balanced accuracy and macro-F1, the confusion
//! matrix, and class weights for imbalanced data.
use serde::{Deserialize, Serialize};

/// How the loss weighs each class's rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ClassWeight {
    /// Every row counts once
    #[default]
    None,
    /// Rows of class c count n / (k n_c): scikit-learn's `class_weight='balanced'`
    Balanced,
}

impl ClassWeight {
    /// The weight of each class `0..classes` for rows with `labels`: scikit-learn's
    /// `compute_class_weight`, k being the classes present; 1 for an absent class.
    pub fn weights(self, labels: &[i64], classes: usize) -> Vec<f64> {
        let mut counts = vec![0usize; classes];
        for &y in labels.iter().filter(|&&y| (0..classes as i64).contains(&y)) {
            counts[y as usize] += 1;
        }
        let present = counts.iter().filter(|&&c| c > 0).count().max(1) as f64;
        let n = labels.len() as f64;
        counts
            .iter()
            .map(|&c| match (self, c) {
                (ClassWeight::Balanced, c) if c > 0 => n / (present * c as f64),
                _ => 1.0,
            })
            .collect()
    }
}

/// Confusion counts: `counts[true][pred]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Confusion {
    pub classes: Vec<String>,
    pub counts: Vec<Vec<u64>>,
}

/// One class's scores. Undefined ratios (no predictions / no samples) are 0, as sklearn's
/// `zero_division=0`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassScores {
    pub class: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: u64,
}

impl Confusion {
    /// Labels outside `0..classes.len()` are not counted.
    pub fn new(labels: &[i64], predictions: &[i64], classes: &[String]) -> Confusion {
        let k = classes.len();
        let mut counts = vec![vec![0u64; k]; k];
        for (&y, &p) in labels.iter().zip(predictions) {
            if (0..k as i64).contains(&y) && (0..k as i64).contains(&p) {
                counts[y as usize][p as usize] += 1;
            }
        }
        Confusion { classes: classes.to_vec(), counts }
    }

    /// Recall of each class (diagonal / row sum); `None` for a class with no samples.
    pub fn per_class_accuracy(&self) -> Vec<Option<f64>> {
        self.counts
            .iter()
            .enumerate()
            .map(|(i, row)| {
                let n: u64 = row.iter().sum();
                (n > 0).then(|| row.get(i).copied().unwrap_or(0) as f64 / n as f64)
            })
            .collect()
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    pub fn accuracy(&self) -> f64 {
        let correct: u64 = (0..self.classes.len()).map(|i| self.counts[i][i]).sum();
        correct as f64 / self.total().max(1) as f64
    }

    /// Mean recall over the classes with samples (scikit-learn's `balanced_accuracy_score`).
    pub fn balanced_accuracy(&self) -> f64 {
        let r: Vec<f64> = self.per_class_accuracy().into_iter().flatten().collect();
        r.iter().sum::<f64>() / r.len().max(1) as f64
    }

    /// Mean F1 over the classes that occur as truth or prediction (scikit-learn's
    /// `f1_score(average='macro')` on those labels, `zero_division=0`).
    pub fn macro_f1(&self) -> f64 {
        let k = self.classes.len();
        let seen = |i: usize| self.counts[i].iter().sum::<u64>() + (0..k).map(|r| self.counts[r][i]).sum::<u64>() > 0;
        let f1: Vec<f64> = self.per_class().iter().enumerate().filter(|(i, _)| seen(*i)).map(|(_, s)| s.f1).collect();
        f1.iter().sum::<f64>() / f1.len().max(1) as f64
    }

    pub fn per_class(&self) -> Vec<ClassScores> {
        let k = self.classes.len();
        (0..k)
            .map(|i| {
                let tp = self.counts[i][i] as f64;
                let support: u64 = self.counts[i].iter().sum();
                let predicted: u64 = (0..k).map(|r| self.counts[r][i]).sum();
                let ratio = |a: f64, b: u64| if b == 0 { 0.0 } else { a / b as f64 };
                let (precision, recall) = (ratio(tp, predicted), ratio(tp, support));
                let f1 = if precision + recall == 0.0 { 0.0 } else { 2.0 * precision * recall / (precision + recall) };
                ClassScores { class: self.classes[i].clone(), precision, recall, f1, support }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_match_a_hand_computed_case() {
        let classes: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        // true a,a,a,b,b,c ; pred a,a,b,b,c,c
        let c = Confusion::new(&[0, 0, 0, 1, 1, 2], &[0, 0, 1, 1, 2, 2], &classes);
        assert_eq!(c.counts, vec![vec![2, 1, 0], vec![0, 1, 1], vec![0, 0, 1]]);
        assert!((c.accuracy() - 4.0 / 6.0).abs() < 1e-12);
        let s = c.per_class();
        assert_eq!((s[0].precision, s[0].recall, s[0].support), (1.0, 2.0 / 3.0, 3));
        assert!((s[1].precision - 0.5).abs() < 1e-12 && (s[1].recall - 0.5).abs() < 1e-12);
        assert!((s[2].f1 - 2.0 * 0.5 * 1.0 / 1.5).abs() < 1e-12);
        // sklearn: balanced_accuracy_score 0.7222, f1_score(average='macro') 0.6556.
        assert!((c.balanced_accuracy() - (2.0 / 3.0 + 0.5 + 1.0) / 3.0).abs() < 1e-12);
        assert!((c.macro_f1() - (0.8 + 0.5 + 2.0 / 3.0) / 3.0).abs() < 1e-12);
        // Classes absent from truth and predictions are left out of both means.
        let d = Confusion::new(&[0, 1, 1], &[0, 1, 0], &classes);
        assert!(
            (d.balanced_accuracy() - 0.75).abs() < 1e-12
                && (d.macro_f1() - (2.0 / 3.0 + 2.0 / 3.0) / 2.0).abs() < 1e-12
        );
        let w = ClassWeight::Balanced.weights(&[0, 0, 0, 1, 2, 2], 4);
        assert_eq!(w, vec![6.0 / 9.0, 2.0, 1.0, 1.0]);
        assert_eq!(ClassWeight::None.weights(&[0, 1], 2), vec![1.0, 1.0]);
        // A class never predicted nor present scores 0, not NaN.
        let z = Confusion::new(&[0], &[0], &classes).per_class();
        assert_eq!((z[2].precision, z[2].recall, z[2].f1), (0.0, 0.0, 0.0));
    }
}
