//! A generated, CIFAR-shaped dataset (32x32 RGB, 10 classes): the offline stand-in for
//! CIFAR-10 in tests, docs and demos. It is NOT CIFAR-10, and says so: `synthetic` is
//! true and every class name starts with "synthetic-".
//!
//! Each class pairs a colour palette with a spatial pattern (stripes, checkerboard,
//! disc, ring, gradient, ...). Each image draws its own phase, scale, palette and
//! brightness jitter and pixel noise, so images differ but classes stay easy to tell
//! apart, even from the features of a ResNet with random weights.
//!
//! [`Difficulty::Hard`] makes classes overlap, so probes can be told apart: half the
//! images take another class's colours, one in five another class's pattern, contrast
//! drops and noise grows. No classifier reaches 100% on it.
//!
//! Only integer arithmetic and our own SplitMix64 are used, so the bytes are identical
//! on every platform.
use super::cifar::{self, PIXEL_BYTES, SYNTHETIC_PREFIX, TEST_FILE, TRAIN_FILES};
use super::{Dataset, Source, Split};
use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::path::Path;
use tch::Tensor;

/// Names the generator in digests; bump it whenever the pixels change.
pub const GENERATOR_VERSION: &str = "transfer-lab synthetic v1";
const SIDE: i32 = 32;
const PLANE: usize = 32 * 32;

/// The spatial pattern of a class; `scale` (0..=3) and phases vary per image.
#[derive(Clone, Copy)]
enum Pattern {
    HStripes,
    VStripes,
    Checker,
    Disc,
    Diagonal,
    Ring,
    Gradient,
    Grid,
    Dots,
    AntiDiagonal,
}

/// One class: name suffix, foreground and background colours, pattern.
struct Class(&'static str, [i32; 3], [i32; 3], Pattern);

const CLASSES: [Class; 10] = [
    Class("red-hstripes", [220, 40, 40], [60, 20, 20], Pattern::HStripes),
    Class("green-vstripes", [40, 200, 60], [20, 60, 20], Pattern::VStripes),
    Class("blue-checker", [50, 80, 230], [15, 20, 70], Pattern::Checker),
    Class("yellow-disc", [240, 220, 40], [70, 70, 90], Pattern::Disc),
    Class("magenta-diagonal", [220, 50, 200], [50, 10, 50], Pattern::Diagonal),
    Class("cyan-ring", [40, 220, 230], [20, 50, 60], Pattern::Ring),
    Class("orange-gradient", [250, 140, 20], [80, 30, 0], Pattern::Gradient),
    Class("grey-grid", [235, 235, 235], [90, 90, 90], Pattern::Grid),
    Class("purple-dots", [150, 60, 230], [230, 220, 200], Pattern::Dots),
    Class("brown-antidiagonal", [150, 100, 50], [40, 30, 20], Pattern::AntiDiagonal),
];

/// How far apart the generated classes are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Difficulty {
    /// Every class its own colours and pattern: near 100% even from random-weight features.
    #[default]
    Easy,
    /// Colours and patterns shared across classes, low contrast, heavy noise.
    Hard,
}

crate::choice::choice!(Difficulty, "synthetic difficulty");

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and the same everywhere.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// A value in `0..n` (the modulo bias is irrelevant here).
    fn below(&mut self, n: u64) -> i32 {
        (self.next() % n) as i32
    }
}

/// The SplitMix64 output function, also used to derive independent streams.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The random stream of item `index` of `split` for `seed` (u64::MAX: the label shuffle).
fn stream(seed: u64, split: Split, index: u64) -> SplitMix64 {
    let tag = match split {
        Split::Train => 0x7472_6169_6E00_0001, // "train"
        Split::Test => 0x7465_7374_0000_0002,  // "test"
    };
    SplitMix64(mix(mix(seed ^ tag).wrapping_add(index)))
}

/// The ten class names, each starting with "synthetic-".
pub fn class_names() -> Vec<String> {
    CLASSES.iter().map(|c| format!("{SYNTHETIC_PREFIX}{}", c.0)).collect()
}

/// SHA-256 hex of the generator version and its arguments.
pub fn digest(n: usize, split: Split, seed: u64) -> String {
    digest_of(n, split, seed, Difficulty::Easy)
}

fn digest_of(n: usize, split: Split, seed: u64, difficulty: Difficulty) -> String {
    let mut desc = format!("{GENERATOR_VERSION} n={n} split={} seed={seed}", split.as_str());
    // Easy digests predate the choice and stay as they were.
    if difficulty == Difficulty::Hard {
        desc += " difficulty=hard";
    }
    hex::encode(Sha256::digest(desc.as_bytes()))
}

/// `n` generated images: images `[n, 3, 32, 32]` u8 and labels `[n]` i64, on the CPU.
///
/// Images of the synthetic stand-in's (train, test) splits, unless asked otherwise.
pub const DEFAULT_SIZES: (usize, usize) = (2000, 500);

/// Deterministic in `(n, split, seed)`; labels are balanced (counts differ by at most 1).
pub fn synthetic(n: usize, split: Split, seed: u64) -> Dataset {
    synthetic_with(n, split, seed, Difficulty::Easy)
}

/// [`synthetic`] at `difficulty`; the hard set is named "synthetic-hard".
pub fn synthetic_with(n: usize, split: Split, seed: u64, difficulty: Difficulty) -> Dataset {
    let (pixels, labels) = generate_with(n, split, seed, difficulty);
    let labels: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
    Dataset {
        name: if difficulty == Difficulty::Hard { "synthetic-hard" } else { "synthetic" }.to_string(),
        split,
        synthetic: true,
        classes: class_names(),
        digest: digest_of(n, split, seed, difficulty),
        val_from: None,
        source: Source::Memory {
            images: Tensor::from_slice(&pixels).view([n as i64, 3, 32, 32]),
            labels: Tensor::from_slice(&labels),
        },
    }
}

/// Raw bytes of [`synthetic`]: pixels `[n, 3, 32, 32]` u8 flattened, and one label byte each.
pub fn generate(n: usize, split: Split, seed: u64) -> (Vec<u8>, Vec<u8>) {
    generate_with(n, split, seed, Difficulty::Easy)
}

fn generate_with(n: usize, split: Split, seed: u64, difficulty: Difficulty) -> (Vec<u8>, Vec<u8>) {
    let labels = balanced_labels(n, &mut stream(seed, split, u64::MAX));
    let mut pixels = vec![0u8; n * PIXEL_BYTES];
    let mut mask = [0u8; PLANE];
    for (i, (out, &label)) in pixels.chunks_exact_mut(PIXEL_BYTES).zip(&labels).enumerate() {
        let mut rng = stream(seed, split, i as u64);
        let class = &CLASSES[label as usize];
        match difficulty {
            Difficulty::Easy => draw(class.1, class.2, class.3, &Look::EASY, &mut rng, &mut mask, out),
            Difficulty::Hard => {
                // Decided first, from the image's own stream: which colours, which pattern.
                let colours = if rng.below(2) == 0 { &CLASSES[rng.below(10) as usize] } else { class };
                let pattern = if rng.below(5) == 0 { CLASSES[rng.below(10) as usize].3 } else { class.3 };
                let look = Look { contrast: 35 + rng.below(66), noise: [24, 40, 56, 72] };
                draw(colours.1, colours.2, pattern, &look, &mut rng, &mut mask, out)
            }
        }
    }
    (pixels, labels)
}

/// `i % 10` for each item, shuffled (Fisher-Yates) so classes are mixed in every batch.
fn balanced_labels(n: usize, rng: &mut SplitMix64) -> Vec<u8> {
    let mut labels: Vec<u8> = (0..n).map(|i| (i % CLASSES.len()) as u8).collect();
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        labels.swap(i, j);
    }
    labels
}

/// Per-image geometry: phase, scale, direction, and band tables indexed by a shifted
/// coordinate (0..128), computed once per image so the pixel loop needs no division.
struct Geometry {
    px: i32,
    py: i32,
    scale: i32,
    flip: bool,
    /// `(t / (2 + scale)) % 2 == 0`: stripes.
    narrow: [bool; 128],
    /// `(t / (3 + scale)) % 2 == 0`: checkerboard and diagonals.
    wide: [bool; 128],
    /// `t % (6 + scale) == 0`: grid lines.
    lines: [bool; 128],
}

impl Geometry {
    fn random(rng: &mut SplitMix64) -> Geometry {
        let (px, py, scale, flip) = (rng.below(32), rng.below(32), rng.below(4), rng.below(2) == 1);
        let mut g = Geometry { px, py, scale, flip, narrow: [false; 128], wide: [false; 128], lines: [false; 128] };
        let (half, wide, grid) = (2 + scale as usize, 3 + scale as usize, 6 + scale as usize);
        for t in 0..128 {
            g.narrow[t] = (t / half) % 2 == 0;
            g.wide[t] = (t / wide) % 2 == 0;
            g.lines[t] = t % grid == 0;
        }
        g
    }
}

/// How an image is rendered: foreground contrast (percent) and the pixel-noise levels.
struct Look {
    contrast: i32,
    noise: [i32; 4],
}

impl Look {
    const EASY: Look = Look { contrast: 100, noise: [4, 8, 12, 16] };
}

/// Draws one image of colours `fg` on `bg` in `pattern` into `out` (`[3, 32, 32]`), using
/// `mask` as scratch.
fn draw(
    fg: [i32; 3],
    bg: [i32; 3],
    pattern: Pattern,
    look: &Look,
    rng: &mut SplitMix64,
    mask: &mut [u8; PLANE],
    out: &mut [u8],
) {
    let g = Geometry::random(rng);
    for y in 0..SIDE {
        for x in 0..SIDE {
            mask[(y * SIDE + x) as usize] = pattern_at(pattern, &g, x, y) as u8;
        }
    }
    // Per-image palette and brightness jitter, then a few levels of pixel noise.
    let fg = fg.map(|v| v + rng.below(25) - 12);
    let bg = bg.map(|v| v + rng.below(25) - 12);
    let fg: [i32; 3] = std::array::from_fn(|c| bg[c] + (fg[c] - bg[c]) * look.contrast / 100);
    let bright = 85 + rng.below(31); // percent
    let amp = look.noise[rng.below(4) as usize];
    let noise: [u64; PLANE] = std::array::from_fn(|_| rng.next());
    // Lookup tables (indexed by bytes, so never out of bounds) keep the per-pixel work
    // to two loads, an add and a clamp.
    let spread: [i32; 256] = std::array::from_fn(|k| ((k as i32 * (2 * amp + 1)) >> 8) - amp);
    for (c, plane) in out.chunks_exact_mut(PLANE).enumerate() {
        let shade: [i32; 256] = std::array::from_fn(|m| (bg[c] + (fg[c] - bg[c]) * m as i32 / 255) * bright / 100);
        let shift = 8 * c as u32;
        for ((px, &m), &bits) in plane.iter_mut().zip(mask.iter()).zip(&noise) {
            // Each channel takes its own byte of the pixel's random word.
            let n = spread[(bits >> shift) as u8 as usize];
            *px = (shade[m as usize] + n).clamp(0, 255) as u8;
        }
    }
}

/// Foreground weight (0..=255) of pixel (x, y) for `pattern`.
fn pattern_at(pattern: Pattern, g: &Geometry, x: i32, y: i32) -> i32 {
    let on = |b: bool| if b { 255 } else { 0 };
    let at = |t: i32| t as usize; // shifted coordinates stay in 0..128
    let disc = |r: i32| {
        let (dx, dy) = (x - (12 + g.px % 9), y - (12 + g.py % 9));
        dx * dx + dy * dy <= r * r
    };
    match pattern {
        Pattern::HStripes => on(g.narrow[at(y + g.py)]),
        Pattern::VStripes => on(g.narrow[at(x + g.px)]),
        Pattern::Checker => on(g.wide[at(x + g.px)] == g.wide[at(y + g.py)]),
        Pattern::Disc => on(disc(7 + g.scale)),
        Pattern::Diagonal => on(g.wide[at(x + y + g.px)]),
        Pattern::Ring => on(disc(9 + g.scale) && !disc(6 + g.scale)),
        Pattern::Gradient => {
            let ramp = (x * 255 + 15) / 31;
            if g.flip {
                255 - ramp
            } else {
                ramp
            }
        }
        Pattern::Grid => on(g.lines[at(x + g.px)] || g.lines[at(y + g.py)]),
        Pattern::Dots => {
            let (dx, dy) = ((x + g.px) % 8 - 4, (y + g.py) % 8 - 4);
            on(dx * dx + dy * dy <= (2 + g.scale / 2) * (2 + g.scale / 2))
        }
        Pattern::AntiDiagonal => on(g.wide[at(x - y + 32 + g.px)]),
    }
}

/// Writes generated data in CIFAR-10 binary layout into `dir`: `train` images split
/// evenly over `data_batch_1..5.bin`, `test` images in `test_batch.bin`, and
/// `batches.meta.txt` with the "synthetic-" class names (so loading it as CIFAR-10
/// still marks it synthetic). Same pixels as `synthetic(train, Train, seed)` and
/// `synthetic(test, Test, seed)`.
pub fn write_synthetic_cifar(dir: &Path, train: usize, test: usize, seed: u64) -> Result<()> {
    if train < TRAIN_FILES.len() || test == 0 {
        let reason = format!("need at least 5 train and 1 test image, got {train} and {test}");
        return Err(Error::invalid("synthetic CIFAR export", reason));
    }
    crate::fsutil::ensure_dir(dir)?;
    let (pixels, labels) = generate(train, Split::Train, seed);
    let mut start = 0;
    for (k, file) in TRAIN_FILES.iter().enumerate() {
        // Spread the remainder over the first files: sizes differ by at most one.
        let count = train / 5 + usize::from(k < train % 5);
        let px = &pixels[start * PIXEL_BYTES..(start + count) * PIXEL_BYTES];
        cifar::write_batch_file(&dir.join(file), px, &labels[start..start + count])?;
        start += count;
    }
    let (pixels, labels) = generate(test, Split::Test, seed);
    cifar::write_batch_file(&dir.join(TEST_FILE), &pixels, &labels)?;
    let meta = class_names().join("\n") + "\n";
    crate::fsutil::write_atomic(&dir.join(cifar::META_FILE), meta.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_reference() {
        // First outputs of SplitMix64 seeded with 0 (reference implementation by Vigna).
        let mut r = SplitMix64(0);
        assert_eq!(r.next(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn labels_are_balanced_permutation() {
        let labels = balanced_labels(1003, &mut SplitMix64(5));
        let mut counts = [0; 10];
        labels.iter().for_each(|&l| counts[l as usize] += 1);
        assert_eq!(counts, [101, 101, 101, 100, 100, 100, 100, 100, 100, 100]);
        // Shuffled, not round-robin.
        assert!(labels.iter().enumerate().any(|(i, &l)| l as usize != i % 10));
    }

    #[test]
    fn masks_cover_both_colours() {
        for pattern in CLASSES.iter().map(|c| c.3) {
            let mut cover = 0;
            let g = Geometry::random(&mut SplitMix64(9));
            for y in 0..SIDE {
                for x in 0..SIDE {
                    cover += pattern_at(pattern, &g, x, y);
                }
            }
            let frac = cover as f64 / (255.0 * 1024.0);
            assert!(frac > 0.05 && frac < 0.95, "coverage {frac}");
        }
    }

    #[test]
    fn names_are_marked_synthetic() {
        let names = class_names();
        assert_eq!(names.len(), 10);
        assert!(names.iter().all(|n| n.starts_with("synthetic-")));
    }
}
