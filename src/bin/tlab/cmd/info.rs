//! `tlab info`: versions, devices, the cache.
use super::Ctx;
use anyhow::Result;

pub(crate) fn exec(ctx: &mut Ctx) -> Result<()> {
    println!("transfer-lab {}", env!("CARGO_PKG_VERSION"));
    println!("libtorch {} (tch 0.24)", transfer_lab::LIBTORCH_VERSION);
    println!("cuda available: {}", tch::Cuda::is_available());
    println!("cuda devices: {}", tch::Cuda::device_count());
    println!("cudnn available: {}", tch::Cuda::cudnn_is_available());
    println!("threads: {}", tch::get_num_threads());
    println!("cache: {}", ctx.cache.display());
    Ok(())
}
