//! # 4. The head: the post's model, trained on cached features
//!
//! The post trains `GlobalAveragePooling2D -> Dropout(0.3) -> Dense(10, softmax)` with
//! Adam, batch 32, for 10 epochs, keeping the last 20% of the training set for
//! validation and checkpointing the best epoch. The pooling is already in the cache
//! (notebook 3), so the head here is dropout + one dense layer on 2048 features.
use transfer_lab::data::{Dataset, Split};
use transfer_lab::features::FeatureSet;
use transfer_lab::models::Backbone;
use transfer_lab::notebook::{show, ProbeComparison, Table, TrainedHead, Tutorial};
use transfer_lab::report::{Chart, Curves, Figure};

fn main() -> transfer_lab::Result<()> {
    //: Features come from the cache notebook 3 filled (or are extracted now).
    // ANCHOR: features
    // The process's allocator (see `heap`), chosen once, before any tensor: what `tlab` does.
    transfer_lab::heap::configure_process()?;
    let tutorial: Tutorial = Tutorial::detect()?;
    let train: Dataset = tutorial.dataset(Split::Train)?;
    let backbone: Backbone = tutorial.backbone()?;
    let train_features: FeatureSet = tutorial.features(&backbone, &train)?;
    // ANCHOR_END: features

    //: ## Train
    //: Adam with Keras' defaults (learning rate 1e-3, epsilon 1e-7), so the numbers
    //: compare with the post's. The best epoch's weights are saved for notebook 5.
    // ANCHOR: train
    let trained: TrainedHead = tutorial.train_head(&train_features, &train.classes)?;
    println!(
        "best epoch {} with validation accuracy {:.3} ({} training, {} validation samples)",
        trained.outcome.best_epoch,
        trained.outcome.best_val_acc,
        trained.outcome.train_samples,
        trained.outcome.val_samples
    );
    // ANCHOR_END: train

    //: ## Curves
    // ANCHOR: history
    show(&Table::new(&trained.history()?, "Per-epoch history"));
    // ANCHOR_END: history

    // ANCHOR: curves
    let curves: Curves = trained.curves(None);
    let chart: Chart = Figure::TrainingCurves(&curves).chart()?;
    show(&chart);
    // ANCHOR_END: curves

    //: ## Beyond the post: convex probes on the same features
    //: Papers measure frozen features with a convex probe: multinomial logistic
    //: regression by L-BFGS, its L2 penalty chosen on the validation split from 45
    //: values in 1e-6..1e5 and then refit on train + validation; and DINO's weighted
    //: k-NN. Both run here on the same cached features, next to the post's head.
    // ANCHOR: probes
    let test: Dataset = tutorial.dataset(Split::Test)?;
    let test_features: FeatureSet = tutorial.features(&backbone, &test)?;
    let probes: ProbeComparison = tutorial.compare_probes(&train_features, &test_features, &trained)?;
    show(&Table::new(&probes.table()?, "Three classifiers on the same features"));
    show(&Figure::Sweep(&probes.sweep).chart()?);
    // ANCHOR_END: probes
    Ok(())
}
