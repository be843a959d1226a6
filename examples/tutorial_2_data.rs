//! # 2. The data
//!
//! CIFAR-10: 60,000 colour pictures of 32x32 pixels in ten classes, 50,000 for training
//! and 10,000 for testing. `tlab fetch cifar10` downloads the binary version (MD5-checked,
//! resumable); `transfer-lab` reads it straight into one tensor per file.
use transfer_lab::data::{Dataset, Split};
use transfer_lab::notebook::{show, ImageGrid, Table, Tutorial};
use transfer_lab::tables::class_balance;
use transfer_lab::tch::Tensor;

fn main() -> transfer_lab::Result<()> {
    // ANCHOR: open
    let tutorial: Tutorial = Tutorial::detect()?;
    let train: Dataset = tutorial.dataset(Split::Train)?;
    let test: Dataset = tutorial.dataset(Split::Test)?;
    println!("{}: {} training and {} test images", train.describe(), train.len(), test.len());
    // ANCHOR_END: open

    //: ## A look at the pictures
    //: The first twenty training images, enlarged four times (nearest neighbour, so
    //: you see the real 32x32 pixels the network gets before upscaling).
    // ANCHOR: grid
    let (images, labels): (Tensor, Tensor) = train.batch(0..20)?;
    let labels: Vec<i64> = Vec::<i64>::try_from(&labels)?;
    let captions: Vec<String> = labels.iter().map(|&l| train.classes[l as usize].clone()).collect();
    show(&ImageGrid::new(&images, &captions, 10, 4)?);
    // ANCHOR_END: grid

    //: ## Class balance
    //: CIFAR-10 has exactly 5,000 training images per class. Keras' `validation_split=0.2`
    //: takes the *last* 20% of the training set as validation data, without shuffling:
    //: the balance of that tail matters too.
    // ANCHOR: balance
    show(&Table::new(&class_balance(&train)?, "Training images per class"));
    // ANCHOR_END: balance

    // ANCHOR: balance_test
    show(&Table::new(&class_balance(&test)?, "Test images per class"));
    // ANCHOR_END: balance_test
    Ok(())
}
