//! Makes the binaries find libtorch at run time and keeps CUDA linked.
use std::path::Path;

fn main() {
    // torch-sys (links = "tch") exports the libtorch lib folder it built against.
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    // torch-sys adds no rpath to final binaries: without it they fail to load libtorch_cpu.so.
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    // The linker drops libtorch_cuda as unused, and then Cuda::is_available() is false.
    if Path::new(&lib).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
}
