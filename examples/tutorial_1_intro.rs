//! # 1. Transfer learning, and the four ways to do it
//!
//! A network trained on ImageNet has learnt edges, textures and object parts that are
//! useful far beyond ImageNet. Transfer learning reuses them: instead of training a
//! ResNet50 on CIFAR-10 from scratch, we keep what it knows and train a little on top.
//! This series reproduces the 2018 post *"Transfer learning: How to build accurate
//! models"* in Rust with `transfer-lab`, then goes further.
use transfer_lab::notebook::{show, strategy_table, Table, Tutorial};

fn main() -> transfer_lab::Result<()> {
    //: ## Where the data and weights come from
    //: `Tutorial::detect` looks in the cache for CIFAR-10 and the ImageNet weights, and
    //: says what it found. Without them every notebook runs on a small **synthetic**
    //: dataset with **random** weights, and says so: those numbers show the code
    //: working, they are not CIFAR-10 results.
    // ANCHOR: detect
    let tutorial: Tutorial = Tutorial::detect()?;
    // ANCHOR_END: detect

    //: ## The post's table
    //: Which strategy to pick depends on how much data you have and how much it
    //: looks like ImageNet. We run all four, plus training from scratch as the baseline.
    // ANCHOR: strategies
    show(&Table::new(&strategy_table()?, "The four strategies of the post"));
    // ANCHOR_END: strategies

    //: ## The machine
    //: Extraction and training run on libtorch: on a GPU when there is one.
    // ANCHOR: machine
    println!(
        "libtorch {}, CUDA available: {}",
        transfer_lab::LIBTORCH_VERSION,
        transfer_lab::tch::Cuda::is_available()
    );
    println!("threads: {}; cache: {}", transfer_lab::tch::get_num_threads(), tutorial.cache.display());
    // ANCHOR_END: machine
    Ok(())
}
