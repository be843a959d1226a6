//! # 6. The other three strategies
//!
//! The linear probe is the post's model. The post's table names three more: a
//! classifier on an earlier stage (data unlike ImageNet), fine-tuning the top of the
//! body (more data), and training every layer from the ImageNet weights (lots of data
//! unlike ImageNet). Each runs here as a whole run (train, keep the best epoch,
//! evaluate) into its own run directory, the same as `tlab run --strategy ...`; training
//! from scratch is the control.
use transfer_lab::notebook::{show, Tutorial};
use transfer_lab::report::{Chart, Figure, RunData};
use transfer_lab::train::Strategy;

fn main() -> transfer_lab::Result<()> {
    // ANCHOR: runs
    // The process's allocator (see `heap`), chosen once, before any tensor: what `tlab` does.
    transfer_lab::heap::configure_process()?;
    let tutorial: Tutorial = Tutorial::detect()?;
    let mut runs: Vec<RunData> = Vec::new();
    for &strategy in Strategy::post_table() {
        let run: RunData = tutorial.run(strategy)?;
        println!("{:>16}: test accuracy {:.4}  ({})", strategy.name(), run.summary.test_accuracy, run.dir.display());
        runs.push(run);
    }
    // ANCHOR_END: runs

    //: ## One chart
    //: The same comparison `tlab report` draws from run directories. Bars carry the
    //: caveats of their runs (synthetic data, random weights) in their labels.
    // ANCHOR: compare
    let chart: Chart = Figure::Comparison(&transfer_lab::report::comparison(&runs)).chart()?;
    show(&chart);
    // ANCHOR_END: compare
    Ok(())
}
