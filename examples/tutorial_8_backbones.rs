//! # 8. Which backbone?
//!
//! The post had one network to choose: Keras' ResNet50. Networks published since
//! transfer better, and cost differently. This chapter puts one of each family
//! `tlab` builds side by side on the same data, with the same probe, and sets beside them
//! what others published for CIFAR-10. Every family runs through the same pipeline:
//! `--arch convnext-tiny` (or `efficientnet-b0`, `keras-resnet50`, `dinov2-vits14`,
//! `clip-vitb16`) on any command. The Vision Transformers read an image as a sequence of
//! patches, which brings two choices a CNN does not have: how the tokens become one
//! vector, and which input sizes fit.
use transfer_lab::models::{Arch, Pool};
use transfer_lab::notebook::{
    published_linear_probe, show, vit_table, weights_registry, BackboneComparison, PoolComparison, Tutorial,
};

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
    //: One architecture of each family, and CLIP's ViT-B/16 beside DINOv2's ViT-S/14 (the
    //: other transformer layout); the logreg probe (the published protocol) on each one's
    //: pooled features. Where the cache lacks a family's weights, that row uses seeded
    //: random weights and says so: it then shows the pipeline, not the family's transfer.
    //: A ViT takes only multiples of its patch, and costs more with every patch, so the
    //: `size` column says what each ran at: at full scale each weights' 224 px crop; in the
    //: quick set-up 64 px, and a ViT its smallest grid of 2x2 patches (28 or 32 px); the
    //: quick set-up also sweeps logreg's penalty over 12 values instead of 45.
    // ANCHOR: compare
    let mut families: Vec<Arch> = Arch::representatives();
    families.push(Arch::ClipVitb16);
    let comparison: BackboneComparison = tutorial.compare_backbones(&families)?;
    show(&comparison.table()?);
    // ANCHOR_END: compare

    //: ## What others measured
    //: Full CIFAR-10 at 224 px with ImageNet weights; their figures, not ours.
    // ANCHOR: published
    show(&published_linear_probe()?);
    // ANCHOR_END: published

    //: ## Token features and input sizes
    //: A ViT cuts the image into patches (14x14 pixels for DINOv2, 16x16 for CLIP-B/16) and
    //: turns each into a token; a class token is added in front (and four registers for
    //: the `-reg` DINOv2s). After the last block, the class token summarises the image and
    //: the patch tokens describe their patches. `--pool` says which become the feature:
    //: `cls`, `mean` (of the patch tokens) or `cls+mean` (both side by side, twice as wide).
    //: Each ViT defaults to what its published evaluation reads: DINOv2's linear probe
    //: concatenates the class token and the patch mean; CLIP's and torchvision's heads
    //: read the class token. A CNN has only `mean`.
    // ANCHOR: vits
    show(&vit_table()?);
    // ANCHOR_END: vits

    //: The same tokens pooled two ways, each a logreg run on the tutorial's data (the
    //: width doubles with `cls+mean`; that run's features are the comparison's, cached):
    // ANCHOR: pools
    let pools: PoolComparison = tutorial.compare_pools(Arch::Dinov2Vits14, &[Pool::Cls, Pool::ClsMean])?;
    show(&pools.table()?);
    // ANCHOR_END: pools

    //: The patch grid must tile the input, so `--size` must be a multiple of the patch;
    //: `tlab` refuses other sizes and names the nearest that fit (the post's 200):
    // ANCHOR: sizes
    for arch in [Arch::Dinov2Vits14, Arch::ClipVitb16] {
        match arch.check_size(200) {
            Ok(()) => println!("{}: 200 fits", arch.name()),
            Err(e) => println!("{e}"),
        }
    }
    // ANCHOR_END: sizes

    //: Any multiple works, not only the 224 px the weights were trained at: the learned
    //: position embeddings (a 37x37 grid in DINOv2's files, 14x14 in CLIP-B/16's) are
    //: resampled bicubically to the input's grid, as transformers' `interpolate_pos_encoding`
    //: does. Fewer pixels mean fewer tokens (4 at 28 px, 256 at 224 for a 14-pixel patch),
    //: which is how the quick comparison above runs in seconds. For a ViT, `--layer layer1..layer4` reads
    //: the tokens after a quarter, half, three quarters and all of the blocks, each through
    //: the final norm (as DINOv2's own evaluation reads intermediate blocks); their maps
    //: are the patch tokens as `[N, D, h, w]`.
    Ok(())
}
