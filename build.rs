//! Makes the binaries find libtorch at run time, keeps CUDA linked, and compiles the heap
//! pool (src/heap/pool.cpp) against libtorch's headers.
use std::path::Path;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(tlab_pool)");
    println!("cargo:rerun-if-changed=src/heap/pool.cpp");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
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
    let include = Path::new(&lib).join("../include");
    if cfg!(target_os = "linux") && include.join("c10/core/CPUAllocator.h").exists() {
        cc::Build::new()
            .cpp(true)
            .pic(true)
            .include(&include)
            .flag("-std=c++17")
            // The ABI of the pip wheels since torch 2.7; nothing crosses it but C calls.
            .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
            .file("src/heap/pool.cpp")
            .compile("tlab_heap_pool");
        println!("cargo:rustc-link-lib=c10");
        println!("cargo:rustc-cfg=tlab_pool");
    }
}
