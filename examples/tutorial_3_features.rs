//! # 3. Features: the frozen ResNet50
//!
//! The post's model is a frozen ResNet50 (`include_top=False`), then global average
//! pooling, dropout and a dense layer. Since the ResNet never changes, its output for
//! each image is the same in every epoch: we compute it once, cache it on disk, and
//! train the head on the cache. Ten epochs then cost seconds instead of hours.
use transfer_lab::data::{Dataset, Split};
use transfer_lab::features::FeatureSet;
use transfer_lab::models::Backbone;
use transfer_lab::notebook::{PoolingCheck, Tutorial};

fn main() -> transfer_lab::Result<()> {
    // ANCHOR: setup
    // The process's allocator (see `heap`), chosen once, before any tensor: what `tlab` does.
    transfer_lab::heap::configure_process()?;
    let tutorial: Tutorial = Tutorial::detect()?;
    let train: Dataset = tutorial.dataset(Split::Train)?;
    let test: Dataset = tutorial.dataset(Split::Test)?;
    let backbone: Backbone = tutorial.backbone()?;
    println!("backbone: {}", backbone.weights.label);
    // ANCHOR_END: setup

    //: ## Long extractions belong in a terminal
    //: On a CPU, 60,000 images through ResNet50 at 200x200 take hours. Start it with
    //: `tlab` and watch it on the dashboard; it writes the same cache this notebook
    //: reads, and resumes where it stopped if interrupted. This prints the command:
    // ANCHOR: command
    println!("{}", tutorial.extract_command());
    // ANCHOR_END: command

    //: ## Extract (or load) the features
    //: A cache hit returns at once; otherwise progress is printed as text lines.
    // ANCHOR: extract
    let train_features: FeatureSet = tutorial.features(&backbone, &train)?;
    let test_features: FeatureSet = tutorial.features(&backbone, &test)?;
    println!("train features {:?}, test features {:?}", train_features.features.size(), test_features.features.size());
    println!("cached in {}", train_features.dir.display());
    // ANCHOR_END: extract

    //: ## Why we pool before caching
    //: ResNet50's last stage gives 2048 maps of 7x7 for a 200x200 image. The post's head
    //: starts with `GlobalAveragePooling2D`, which averages each map. Nothing before the
    //: pooling is trained, so pooling first and caching 2048 numbers per image gives the
    //: head exactly the same input, at 1/49 of the disk (and memory).
    // ANCHOR: pooling
    let check: PoolingCheck = PoolingCheck::run(&backbone, &test, 4)?;
    println!("{check}");
    // ANCHOR_END: pooling
    Ok(())
}
