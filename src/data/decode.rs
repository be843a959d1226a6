//! Decoding image files off the forward pass: each batch's files are decoded and resized
//! by worker threads, and [`Batches`] keeps a bounded queue of ready batches ahead of its
//! reader. Order is the order asked for, whatever thread finishes first; memory is
//! bounded by `AHEAD` batches in the queue plus the one being decoded.
//!
//! A file that passed the listing's checks but fails to decode (changed since, or damaged
//! where no check looks) is left out of its batch and recorded in [`Decoding`]: the batch
//! goes on without it, or, with `strict`, the batch is an error naming it.
use super::folder::{self, Skipped};
use super::{Dataset, Source};
use crate::preprocess::Preprocess;
use crate::{Error, Result};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};
use tch::Tensor;

/// How a folder's files are decoded, and the files that failed after listing (shared by
/// the dataset's clones of it, and its decoding threads).
#[derive(Debug, Clone)]
pub struct Decoding {
    /// Pixels a header may claim (see [`folder::DEFAULT_MAX_PIXELS`]).
    pub max_pixels: u64,
    /// A file failing to decode is an error, not a skipped file.
    pub strict: bool,
    failed: Arc<Mutex<Vec<Skipped>>>,
}

impl Decoding {
    pub fn new(max_pixels: u64, strict: bool) -> Decoding {
        Decoding { max_pixels, strict, failed: Default::default() }
    }

    /// The files that failed to decode so far, each once, in the order met.
    pub fn failed(&self) -> Vec<Skipped> {
        self.failed.lock().expect("no panic holds it").clone()
    }

    /// Records a batch's failures; with `strict`, they are the error.
    fn record(&self, failures: Vec<(usize, Error)>, paths: &[PathBuf]) -> Result<()> {
        if failures.is_empty() {
            return Ok(());
        }
        let new: Vec<Skipped> = failures
            .into_iter()
            .map(|(i, e)| Skipped { path: paths[i].clone(), reason: reason(&e, &paths[i]) })
            .collect();
        if self.strict {
            let root = Path::new("");
            return Err(Error::data(
                &new[0].path,
                format!("failed to decode: {} (--strict)", folder::unusable(root, &new)),
            ));
        }
        self.note(new);
        Ok(())
    }

    /// Adds failures met in an earlier pass (a feature cache's skipped rows); with
    /// `strict`, they are the error.
    pub(super) fn note_earlier(&self, new: Vec<Skipped>) -> Result<()> {
        if self.strict && !new.is_empty() {
            let what = folder::unusable(Path::new(""), &new);
            let reason = format!("failed to decode when the cached features were extracted: {what} (--strict)");
            return Err(Error::data(&new[0].path, reason));
        }
        self.note(new);
        Ok(())
    }

    /// Adds failures, each file once.
    fn note(&self, new: Vec<Skipped>) {
        let mut failed = self.failed.lock().expect("no panic holds it");
        for s in new {
            if !failed.iter().any(|f| f.path == s.path) {
                failed.push(s);
            }
        }
    }
}

/// An error's reason without the path it names (the path is said beside it).
fn reason(e: &Error, path: &Path) -> String {
    if let Error::Data { path: p, reason } = e {
        if p == path {
            return reason.clone();
        }
    }
    let text = e.to_string();
    let prefix = format!("{}: ", path.display());
    text.strip_prefix(&prefix).map(str::to_string).unwrap_or(text)
}

/// A row of a dataset (its index in the listing) whose file failed to decode in an
/// earlier pass, and why: what a feature cache records of the rows it left out.
///
/// The cache key hashes every file's bytes, and decoding the same bytes fails the same
/// way: the rows a key's folder leaves out are fixed by the key, so a cache hit leaves out
/// exactly what a fresh extraction would.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SkippedRow {
    pub row: usize,
    pub reason: String,
}

/// Ready batches queued ahead of the reader.
pub const AHEAD: usize = 2;

/// Decoding threads per batch: the settings' (`$TLAB_DECODE_THREADS`), else the
/// machine's cores.
pub fn workers() -> usize {
    crate::settings::current()
        .decode_threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Images `[B, 3, S, S]` f32 of the files that decoded, in the order asked, and the
/// indices (into the paths asked) of those that did not, with why.
pub type Decoded = (Tensor, Vec<(usize, Error)>);

/// Decodes `paths` with `threads` workers into `[B, 3, S, S]` f32, in `paths`' order;
/// the files that fail are left out (see [`Decoded`]).
pub fn decode_all(paths: &[PathBuf], pre: &Preprocess, max_pixels: u64, threads: usize) -> Result<Decoded> {
    decode_with(paths, pre.size, threads, |_, p, out| folder::decode_sized_into(p, pre, max_pixels, out))
}

/// As [`decode_all`], each image through a RandomResizedCrop + flip decided by its row of
/// `draws` (`[B, AUGMENT_DRAWS]` uniforms, drawn by the caller from its seeded stream).
pub fn decode_augmented(
    paths: &[PathBuf],
    size: i64,
    max_pixels: u64,
    draws: &[f32],
    threads: usize,
) -> Result<Decoded> {
    use super::resample::AUGMENT_DRAWS;
    decode_with(paths, size, threads, |i, p, out| {
        folder::decode_augmented_into(p, size, max_pixels, &draws[i * AUGMENT_DRAWS..(i + 1) * AUGMENT_DRAWS], out)
    })
}

/// Decodes `paths[i]` for each `i` and records what failed in `decoding`; returns the
/// images and labels of those that decoded.
pub(super) fn decode_rows(
    paths: &[PathBuf],
    labels: &[i64],
    decoding: &Decoding,
    decode: impl FnOnce(&[PathBuf]) -> Result<Decoded>,
) -> Result<(Tensor, Tensor)> {
    let (images, failures) = decode(paths)?;
    let kept: Vec<i64> =
        (0..labels.len()).filter(|i| !failures.iter().any(|(f, _)| f == i)).map(|i| labels[i]).collect();
    decoding.record(failures, paths)?;
    Ok((images, Tensor::from_slice(&kept)))
}

/// Runs `one(index, path, output slice)` for every path on `threads` workers.
fn decode_with<F>(paths: &[PathBuf], size: i64, threads: usize, one: F) -> Result<Decoded>
where
    F: Fn(usize, &Path, &mut [f32]) -> Result<()> + Sync,
{
    let s = size;
    let each = (3 * s * s) as usize;
    // Decoded straight into the batch tensor: no zeroed buffer to fault in and copy
    // (a 32-image batch at 224 px is 19 MB), and libtorch's allocator reuses its pages.
    let batch = Tensor::empty([paths.len() as i64, 3, s, s], (tch::Kind::Float, tch::Device::Cpu));
    if paths.is_empty() {
        return Ok((batch, vec![]));
    }
    // SAFETY: `batch` is a new contiguous f32 CPU tensor of exactly this many elements,
    // alive and unshared until this function returns it; the slice is dropped first.
    let out: &mut [f32] = unsafe { std::slice::from_raw_parts_mut(batch.data_ptr() as *mut f32, each * paths.len()) };
    let threads = threads.clamp(1, paths.len().max(1));
    // Workers take contiguous runs of images and call nothing of libtorch's, so they
    // never contend with its intra-op pool.
    let per = paths.len().div_ceil(threads).max(1);
    let failures: Vec<(usize, Error)> = std::thread::scope(|scope| {
        let handles: Vec<_> = out
            .chunks_mut(each * per)
            .zip(paths.chunks(per))
            .enumerate()
            .map(|(k, (buf, ps))| {
                let one = &one;
                scope.spawn(move || {
                    let mut failed = vec![];
                    for (j, (img, p)) in buf.chunks_mut(each).zip(ps).enumerate() {
                        if let Err(e) = one(k * per + j, p, img) {
                            failed.push((k * per + j, e));
                        }
                    }
                    failed
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("a decoding thread panicked")).collect()
    });
    if failures.is_empty() {
        return Ok((batch, failures));
    }
    let kept: Vec<i64> = (0..paths.len() as i64).filter(|i| !failures.iter().any(|(f, _)| *f as i64 == *i)).collect();
    Ok((batch.index_select(0, &Tensor::from_slice(&kept)), failures))
}

/// Batches of a dataset in a fixed order; from files, decoded ahead by a thread.
pub struct Batches<'a> {
    inner: Inner<'a>,
}

enum Inner<'a> {
    Memory { data: &'a Dataset, ranges: std::vec::IntoIter<Range<usize>> },
    Files { rx: Receiver<Result<(Tensor, Tensor)>>, _thread: std::thread::JoinHandle<()> },
}

impl<'a> Batches<'a> {
    pub(super) fn new(data: &'a Dataset, ranges: Vec<Range<usize>>) -> Batches<'a> {
        let inner = match &data.source {
            Source::Memory { .. } => Inner::Memory { data, ranges: ranges.into_iter() },
            Source::Files { paths, labels, pre, decoding } => {
                // Only the asked batches' files travel to the thread, not the whole list:
                // an extraction asks shard by shard, and a list can hold millions.
                let jobs: Vec<(Vec<PathBuf>, Vec<i64>)> =
                    ranges.into_iter().map(|r| (paths[r.clone()].to_vec(), labels[r].to_vec())).collect();
                let (pre, decoding) = (*pre, decoding.clone());
                let (tx, rx) = sync_channel(AHEAD);
                let threads = workers();
                let thread = std::thread::spawn(move || {
                    for (paths, labels) in jobs {
                        let batch = decode_rows(&paths, &labels, &decoding, |p| {
                            decode_all(p, &pre, decoding.max_pixels, threads)
                        });
                        let failed = batch.is_err();
                        // The reader went away (an error, a stop): nothing more to do.
                        if tx.send(batch).is_err() || failed {
                            return;
                        }
                    }
                });
                Inner::Files { rx, _thread: thread }
            }
        };
        Batches { inner }
    }
}

impl Iterator for Batches<'_> {
    type Item = Result<(Tensor, Tensor)>;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.inner {
            Inner::Memory { data, ranges } => ranges.next().map(|r| data.batch(r)),
            Inner::Files { rx, .. } => rx.recv().ok(),
        }
    }
}
