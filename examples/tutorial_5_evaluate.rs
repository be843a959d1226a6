//! # 5. Evaluation
//!
//! The test split has been untouched so far: neither the head's training nor its
//! choice of epoch saw it. Here the best head from notebook 4 meets it once.
use transfer_lab::data::{Dataset, Split};
use transfer_lab::features::FeatureSet;
use transfer_lab::models::Backbone;
use transfer_lab::notebook::{show, ImageGrid, Table, TrainedHead, Tutorial};
use transfer_lab::report::{Chart, ConfusionChart, Figure};
use transfer_lab::tables::{confusion_frame, per_class_frame};
use transfer_lab::train::Evaluation;

fn main() -> transfer_lab::Result<()> {
    // ANCHOR: load
    // The process's allocator (see `heap`), chosen once, before any tensor: what `tlab` does.
    transfer_lab::heap::configure_process()?;
    let tutorial: Tutorial = Tutorial::detect()?;
    let test: Dataset = tutorial.dataset(Split::Test)?;
    let backbone: Backbone = tutorial.backbone()?;
    let test_features: FeatureSet = tutorial.features(&backbone, &test)?;
    let trained: TrainedHead = tutorial.load_head()?;
    // ANCHOR_END: load

    //: ## Test accuracy
    // ANCHOR: accuracy
    let eval: Evaluation = trained.evaluate(&test_features)?;
    println!("test accuracy {:.4} on {} images ({})", eval.accuracy, eval.labels.len(), test.describe());
    // ANCHOR_END: accuracy

    //: ## Where it goes wrong
    //: Rows are the true classes, columns the predictions.
    // ANCHOR: per_class
    let heat: ConfusionChart = trained.confusion(&eval);
    show(&Table::new(&per_class_frame(&heat.matrix)?, "Per-class precision, recall and F1"));
    // ANCHOR_END: per_class

    // ANCHOR: confusion
    show(&Table::new(&confusion_frame(&heat.matrix)?, "Confusion matrix (rows: true class)"));
    // ANCHOR_END: confusion

    // ANCHOR: heatmap
    let chart: Chart = Figure::Confusion(&heat).chart()?;
    show(&chart);
    // ANCHOR_END: heatmap

    //: ## Mistakes, as pictures
    //: The first sixteen test images the head got wrong, captioned `true -> predicted`.
    // ANCHOR: mistakes
    show(&ImageGrid::mistakes(&test, &eval.labels, &eval.predictions, 16)?);
    // ANCHOR_END: mistakes
    Ok(())
}
