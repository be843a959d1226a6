//! `tlab curve RUN`: a learning curve on the run's cached features.
use super::Ctx;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;
use transfer_lab::curve::{CurveConfig, CurveMethod};

#[derive(Args)]
pub(crate) struct CurveArgs {
    /// A finished run trained on features (linear-probe, earlier-layer, logreg, knn)
    run: PathBuf,
    /// Training images per class, a comma list; `all` is every image
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16,32,all", value_parser = parse_shots)]
    shots: Vec<Option<usize>>,
    /// Draws of the images per point (seeds 0..N)
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    seeds: u64,
    /// Classifiers to fit
    #[arg(long, value_enum, value_delimiter = ',', default_value = "logreg,knn,head")]
    methods: Vec<CurveMethod>,
    /// logreg's L2 penalty (no validation split to choose it at these sizes)
    #[arg(long, default_value_t = CurveConfig::default().lambda)]
    lambda: f64,
    /// Output folder (default: the run directory)
    #[arg(long)]
    out: Option<PathBuf>,
}

fn parse_shots(s: &str) -> Result<Option<usize>, String> {
    match s.trim() {
        "all" => Ok(None),
        v => match v.parse::<usize>() {
            Ok(k) if k > 0 => Ok(Some(k)),
            _ => Err(format!("`{v}`: expected a positive number of images per class, or all")),
        },
    }
}

impl CurveArgs {
    pub(crate) fn exec(self, _ctx: &mut Ctx) -> Result<()> {
        let cfg = CurveConfig {
            shots: self.shots,
            seeds: self.seeds,
            methods: self.methods,
            lambda: self.lambda,
            ..Default::default()
        };
        let (data, md) = transfer_lab::report::write_learning_curve(&self.run, &cfg, self.out.as_deref())?;
        let curve = &data.curve;
        for s in &curve.short {
            eprintln!("note: {s}");
        }
        print!("{}", transfer_lab::report::curve_markdown(curve));
        println!("\n{}", transfer_lab::report::curve_answer(curve, &data.run));
        eprintln!("written: {}", md.display());
        Ok(())
    }
}
