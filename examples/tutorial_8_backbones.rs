//! # 8. Which backbone?
//!
//! The post had one network to choose: Keras' ResNet50. Networks published since
//! transfer better, and cost differently. This chapter puts one of each family
//! `tlab` builds side by side on the same data, with the same probe, and sets beside them
//! what others published for CIFAR-10. Every family runs through the same pipeline:
//! `--arch convnext-tiny` (or `efficientnet-b0`, `keras-resnet50`) on any command.
use transfer_lab::models::Arch;
use transfer_lab::notebook::{published_linear_probe, show, weights_registry, BackboneComparison, Tutorial};

fn main() -> transfer_lab::Result<()> {
    // ANCHOR: setup
    // The process's allocator (see `heap`), chosen once, before any tensor: what `tlab` does.
    transfer_lab::heap::configure_process()?;
    let tutorial: Tutorial = Tutorial::detect()?;
    // ANCHOR_END: setup

    //: ## The weights on offer
    //: Each entry is a published file with its publisher's ImageNet accuracy and the
    //: evaluation transform its accuracy was measured with; `tlab` applies that transform
    //: unless told otherwise (`--norm`, `--interpolation`).
    // ANCHOR: registry
    show(&weights_registry()?);
    // ANCHOR_END: registry

    //: ## Side by side on the same data
    //: One architecture of each family; the logreg probe (the published protocol) on its
    //: pooled features. Where the cache lacks a family's weights, that row uses seeded
    //: random weights and says so: it then shows the pipeline, not the family's transfer.
    // ANCHOR: compare
    let families: Vec<Arch> = Arch::representatives();
    let comparison: BackboneComparison = tutorial.compare_backbones(&families)?;
    show(&comparison.table()?);
    // ANCHOR_END: compare

    //: ## What others measured
    //: Full CIFAR-10 at 224 px with ImageNet weights; their figures, not ours.
    // ANCHOR: published
    show(&published_linear_probe()?);
    // ANCHOR_END: published
    Ok(())
}
