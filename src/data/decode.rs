//! Decoding image files off the forward pass: each batch's files are decoded and resized
//! by worker threads, and [`Batches`] keeps a bounded queue of ready batches ahead of its
//! reader. Order is the order asked for, whatever thread finishes first; memory is
//! bounded by `AHEAD` batches in the queue plus the one being decoded.
use super::{folder, Dataset, Source};
use crate::preprocess::Preprocess;
use crate::Result;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use tch::Tensor;

/// Ready batches queued ahead of the reader.
pub const AHEAD: usize = 2;

/// Decoding threads per batch: the settings' (`$TLAB_DECODE_THREADS`), else the
/// machine's cores.
pub fn workers() -> usize {
    crate::settings::current()
        .decode_threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Decodes `paths` with `threads` workers into `[B, 3, S, S]` f32, in `paths`' order.
/// The first failing file (in that order) is the error.
pub fn decode_all(paths: &[PathBuf], pre: &Preprocess, threads: usize) -> Result<Tensor> {
    decode_with(paths, pre.size, threads, |_, p, out| folder::decode_sized_into(p, pre, out))
}

/// As [`decode_all`], each image through a RandomResizedCrop + flip decided by its row of
/// `draws` (`[B, AUGMENT_DRAWS]` uniforms, drawn by the caller from its seeded stream).
pub fn decode_augmented(paths: &[PathBuf], size: i64, draws: &[f32], threads: usize) -> Result<Tensor> {
    use super::resample::AUGMENT_DRAWS;
    decode_with(paths, size, threads, |i, p, out| {
        folder::decode_augmented_into(p, size, &draws[i * AUGMENT_DRAWS..(i + 1) * AUGMENT_DRAWS], out)
    })
}

/// Runs `one(index, path, output slice)` for every path on `threads` workers.
fn decode_with<F>(paths: &[PathBuf], size: i64, threads: usize, one: F) -> Result<Tensor>
where
    F: Fn(usize, &Path, &mut [f32]) -> Result<()> + Sync,
{
    let s = size;
    let each = (3 * s * s) as usize;
    // Decoded straight into the batch tensor: no zeroed buffer to fault in and copy
    // (a 32-image batch at 224 px is 19 MB), and libtorch's allocator reuses its pages.
    let batch = Tensor::empty([paths.len() as i64, 3, s, s], (tch::Kind::Float, tch::Device::Cpu));
    if paths.is_empty() {
        return Ok(batch);
    }
    // SAFETY: `batch` is a new contiguous f32 CPU tensor of exactly this many elements,
    // alive and unshared until this function returns it; the slice is dropped first.
    let out: &mut [f32] = unsafe { std::slice::from_raw_parts_mut(batch.data_ptr() as *mut f32, each * paths.len()) };
    let threads = threads.clamp(1, paths.len().max(1));
    // Workers take contiguous runs of images and call nothing of libtorch's, so they
    // never contend with its intra-op pool.
    let per = paths.len().div_ceil(threads).max(1);
    let errors: Vec<Option<crate::Error>> = std::thread::scope(|scope| {
        let handles: Vec<_> = out
            .chunks_mut(each * per)
            .zip(paths.chunks(per))
            .enumerate()
            .map(|(k, (buf, ps))| {
                let one = &one;
                scope.spawn(move || {
                    for (j, (img, p)) in buf.chunks_mut(each).zip(ps).enumerate() {
                        if let Err(e) = one(k * per + j, p, img) {
                            return Some(e);
                        }
                    }
                    None
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a decoding thread panicked")).collect()
    });
    if let Some(e) = errors.into_iter().flatten().next() {
        return Err(e);
    }
    Ok(batch)
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
            Source::Files { paths, labels, pre } => {
                // Only the asked batches' files travel to the thread, not the whole list:
                // an extraction asks shard by shard, and a list can hold millions.
                let jobs: Vec<(Vec<PathBuf>, Vec<i64>)> =
                    ranges.into_iter().map(|r| (paths[r.clone()].to_vec(), labels[r].to_vec())).collect();
                let pre = *pre;
                let (tx, rx) = sync_channel(AHEAD);
                let threads = workers();
                let thread = std::thread::spawn(move || {
                    for (paths, labels) in jobs {
                        let batch = decode_all(&paths, &pre, threads).map(|x| (x, Tensor::from_slice(&labels)));
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
