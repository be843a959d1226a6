//! # 7. Using your model
//!
//! A model is only useful once it leaves the run that trained it. This chapter trains
//! the post's head on a folder of photos (`root/<class>/*.jpg`, or `train/`, `val/` and
//! `test/` folders, as torchvision's `ImageFolder` users keep them), predicts classes of
//! images it has never seen, and exports one file that `tlab predict`, this library and
//! Python's `torch.jit.load` all run, with no run directory or cache.
use std::path::PathBuf;
use transfer_lab::classifier::{expand_paths, Classifier, Prediction};
use transfer_lab::notebook::{show, ImageGrid, Tutorial};
use transfer_lab::report::RunData;
use transfer_lab::tch::Device;
use transfer_lab::train::Strategy;

fn main() -> transfer_lab::Result<()> {
    // ANCHOR: photos
    // The process's allocator (see `heap`), chosen once, before any tensor: what `tlab` does.
    transfer_lab::heap::configure_process()?;
    let tutorial: Tutorial = Tutorial::detect()?;
    // Generated stand-ins for your photos; replace this path with your own folder.
    let photos: PathBuf = tutorial.demo_photos()?;
    println!("photos in {}", photos.display());
    // ANCHOR_END: photos

    //: ## Train on the folder
    //: Validation is drawn from `train/` class by class (stratified), files that are not
    //: usable images are named in one warning, and photos keep their aspect ratio:
    //: the shorter side is resized and the centre cropped, as torchvision's weights expect.
    // ANCHOR: train
    let run: RunData = tutorial.run_folder(&photos, Strategy::LinearProbe)?;
    println!("{}: test accuracy {:.4}", run.summary.dataset, run.summary.test_accuracy);
    // ANCHOR_END: train

    //: ## Predict new images
    //: `Classifier::load` takes a run directory or an exported file. Each prediction is the
    //: top classes with their probabilities; an unreadable image is a row with its error.
    // ANCHOR: predict
    let model: Classifier = Classifier::load(&run.dir, &tutorial.cache, Device::Cpu)?;
    // Eight test photos, spread over the classes (folders are walked in sorted order).
    let all: Vec<PathBuf> = expand_paths(&[photos.join("test")])?;
    let images: Vec<PathBuf> = all.iter().step_by(all.len().div_ceil(8)).cloned().collect();
    let predictions: Vec<Prediction> = model.predict(&images, 3, 32)?;
    show(&ImageGrid::predictions(&model, &predictions)?);
    // ANCHOR_END: predict

    //: ## One file to ship
    //: The safetensors file holds the backbone, the head, the class names, the
    //: preprocessing and the run's metrics; the TorchScript file runs in Python.
    // ANCHOR: export
    let file: PathBuf = run.dir.join("model.safetensors");
    model.export(&file)?;
    model.export_torchscript(&run.dir.join("model.pt"))?;
    let again: Classifier = Classifier::from_file(&file, Device::Cpu)?;
    println!(
        "{}: {} classes, {} px ({}), trained on {}, test accuracy {:?}",
        file.file_name().unwrap().to_string_lossy(),
        again.meta.classes.len(),
        again.meta.preprocess.size,
        again.meta.preprocess.resize.name(),
        again.meta.dataset,
        again.meta.test_accuracy
    );
    // ANCHOR_END: export
    Ok(())
}
