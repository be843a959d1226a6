//! Writes the tutorial's generated photos (notebooks 7 and 9) for `scripts/book.sh`:
//! `OUT/synthetic-photos/{train,test}/<class>/*.jpg`, and `OUT/synthetic-photos-imbalanced`,
//! the same with the first class cut to `KEEP` training photos (8 by default).
//!
//! `cargo run --example synthetic_photos -- OUT [KEEP]`
use std::path::PathBuf;
use transfer_lab::notebook::{demo_photos_in, imbalanced_copy};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = PathBuf::from(args.first().ok_or("usage: synthetic_photos OUT [KEEP]")?);
    let keep: usize = args.get(1).map_or(Ok(8), |k| k.parse())?;
    let photos = demo_photos_in(&out.join("synthetic-photos"))?;
    // The first class in name order: the one the folder reader calls class 0.
    let mut classes: Vec<String> = std::fs::read_dir(photos.join("train"))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    classes.sort();
    let small = classes.first().ok_or("no class folders")?;
    let imbalanced = imbalanced_copy(&photos, &out.join("synthetic-photos-imbalanced"), small, keep)?;
    println!("{}\n{}\n{small}", photos.display(), imbalanced.display());
    Ok(())
}
