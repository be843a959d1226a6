//! # 9. Why it said that, and how sure it is
//!
//! A test accuracy says how often a model is right, not why it said what it said, how far
//! to trust its probabilities, how it fares on a class with few photos, or whether more
//! photos would help. This chapter asks all four of one run: the post's linear probe on a
//! folder of photos, calibrated. Grad-CAM heatmaps show where it looked; temperature
//! scaling makes its probabilities honest; class weights keep a small class from being
//! ignored; and a learning curve answers the post's "is my dataset small or large?".
use std::path::PathBuf;
use transfer_lab::classifier::{expand_paths, Classifier};
use transfer_lab::curve::CurveConfig;
use transfer_lab::explain::{explain_files, Explained};
use transfer_lab::metrics::ClassWeight;
use transfer_lab::notebook::{
    calibration_table, class_weight_table, folder_class, heatmap_gallery, imbalanced_copy, right_and_wrong,
    run_warnings, show, Table, Tutorial,
};
use transfer_lab::polars::prelude::DataFrame;
use transfer_lab::report::{curve_answer, write_learning_curve, Figure, LearningCurve, Reliability, RunData};
use transfer_lab::run::RunConfig;
use transfer_lab::tch::Device;
use transfer_lab::train::Strategy;

fn main() -> transfer_lab::Result<()> {
    // ANCHOR: setup
    // The process's allocator (see `heap`), chosen once, before any tensor: what `tlab` does.
    transfer_lab::heap::configure_process()?;
    let tutorial: Tutorial = Tutorial::detect()?;
    // Generated stand-ins for your photos (notebook 7's); replace with your own folder.
    let photos: PathBuf = tutorial.demo_photos()?;
    // ANCHOR_END: setup

    //: ## One run, calibrated
    //: The linear probe on the photos, as in notebook 7, with `calibrate` set: after
    //: training, one temperature is fitted on the validation split (`tlab run --calibrate`).
    // ANCHOR: run
    let mut cfg: RunConfig = tutorial.folder_config(&photos, Strategy::LinearProbe);
    cfg.name = "tutorial-interpret".into();
    cfg.calibrate = true;
    let run: RunData = tutorial.run_with(&cfg)?;
    println!("{}: test accuracy {:.4}", run.summary.dataset, run.summary.test_accuracy);
    // ANCHOR_END: run

    //: ## Why it said that: Grad-CAM
    //: Grad-CAM weighs the last stage's maps by how much each moves the class's score and
    //: keeps the positive part: red is where the evidence for that class is. Five photos
    //: the run got right and one it got wrong, each with the map of the class it said (what
    //: `tlab predict RUN PHOTOS --explain OUT_DIR` writes), captioned with the folder the
    //: photo came from (the truth) and the probability given to the class mapped.
    // ANCHOR: explain
    let model: Classifier = Classifier::load(&run.dir, &tutorial.cache, Device::Cpu)?;
    let test: Vec<PathBuf> = expand_paths(&[photos.join("test")])?;
    let (right, wrong): (Vec<PathBuf>, Vec<PathBuf>) = right_and_wrong(&model, &test, 5, 1)?;
    let picked: Vec<PathBuf> = right.iter().chain(&wrong).cloned().collect();
    let maps: Vec<Explained> = explain_files(&model, &picked, None, &run.dir.join("heatmaps"), 32)?;
    show(&heatmap_gallery(&maps)?);
    // ANCHOR_END: explain

    //: Any class can be asked for (`--class NAME`): here the class the mistake should have
    //: said, in every photo. Where the map is cold, the model found nothing of that class.
    // ANCHOR: explain_class
    let class: String = wrong.first().and_then(|p| folder_class(p)).unwrap_or_else(|| model.meta.classes[0].clone());
    let out: PathBuf = run.dir.join(format!("heatmaps-{class}"));
    let maps: Vec<Explained> = explain_files(&model, &picked, Some(&class), &out, 32)?;
    show(&heatmap_gallery(&maps)?);
    // ANCHOR_END: explain_class

    //: ## How sure it is: calibration
    //: A model that says 90% should be right 9 times in 10. The expected calibration error
    //: (ECE) is the gap between confidence and accuracy over 15 confidence bins, weighted
    //: by their rows; the NLL is the mean of `-log p(true class)`. Dividing the logits by
    //: one temperature `T` keeps every prediction and moves only the probabilities; `T` is
    //: fitted to minimise the validation NLL. When every validation photo is right (the
    //: generated classes are easy), the NLL keeps falling as `T` shrinks and the fit runs
    //: to a temperature near zero: certainty is what those photos support, and the sign
    //: that they are too few, or too easy, to calibrate on.
    // ANCHOR: calibrate
    let reliability: Reliability = run.calibration.clone().expect("the run was calibrated");
    let caption = "Validation split, before and after temperature scaling";
    show(&Table::new(&calibration_table(&reliability.calibration)?, caption));
    // ANCHOR_END: calibrate

    //: The reliability diagram: each bin's accuracy against its confidence, grey before
    //: scaling and blue after; a calibrated model's bars reach the diagonal. With a few
    //: dozen validation photos most bins are empty or hold a handful, so read it loosely.
    // ANCHOR: reliability
    show(&Figure::Reliability(&reliability).chart()?);
    // ANCHOR_END: reliability

    //: ## A class with few photos: class weights
    //: A copy of the photos where one class keeps only 8 training photos (the test split
    //: is untouched), trained twice: plainly, and with `--class-weight balanced`, which
    //: weighs each class's rows by `n / (k n_c)` in the loss (scikit-learn's rule). The run
    //: warns when the largest class has more than 3x the photos of the smallest.
    // ANCHOR: imbalance
    let small: String = run.confusion.classes[0].clone();
    let imbalanced: PathBuf =
        imbalanced_copy(&photos, &photos.with_file_name("synthetic-photos-imbalanced"), &small, 8)?;
    let mut cfg: RunConfig = tutorial.folder_config(&imbalanced, Strategy::LinearProbe);
    cfg.name = "tutorial-imbalanced".into();
    let plain: RunData = tutorial.run_with(&cfg)?;
    cfg.name = "tutorial-imbalanced-balanced".into();
    cfg.head.class_weight = ClassWeight::Balanced;
    let balanced: RunData = tutorial.run_with(&cfg)?;
    run_warnings(&plain)?.iter().for_each(|w| println!("WARNING: {w}"));
    // ANCHOR_END: imbalance

    //: Accuracy counts photos, so a class with few test photos barely moves it; balanced
    //: accuracy (the mean of the classes' recalls) and macro-F1 (the mean of their F1s)
    //: count each class once.
    // ANCHOR: imbalance_scores
    let scores: DataFrame = class_weight_table(&[("none", &plain), ("balanced", &balanced)])?;
    show(&Table::new(&scores, "Test split, after training on the imbalanced copy"));
    // ANCHOR_END: imbalance_scores

    //: ## Small or large? The learning curve
    //: The post's first question is the dataset's size. The learning curve measures it:
    //: logreg, k-NN and the head fitted on k photos per class of the run's cached features
    //: (3 draws each), scored on the whole test split (`tlab curve RUN`). Where a method's
    //: line flattens, more photos of the same kind add little; where it still climbs at
    //: "all", the dataset is small for it.
    // ANCHOR: curve
    let (curve, _md): (LearningCurve, PathBuf) = write_learning_curve(&run.dir, &CurveConfig::default(), None)?;
    show(&Figure::LearningCurve(&curve).chart()?);
    println!("{}", curve_answer(&curve.curve, &curve.run));
    // ANCHOR_END: curve
    Ok(())
}
