//! Heap modes (`transfer_lab::heap`): reuse keeps a freed large block's pages, huge pages
//! fault a large tensor in 2 MiB at a time. `harness = false`: this runs on the main
//! thread, whose allocations use glibc's main arena, as `tlab`'s do, and it configures the
//! process before any tensor exists, as `tlab` does.

/// Minor page faults of this thread so far.
fn faults() -> i64 {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct it is given.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) }, 0);
    u.ru_minflt
}

/// Page faults of allocating, touching and freeing `touch`'s 64 MiB block, the second time.
fn faults_of_second(touch: impl Fn()) -> i64 {
    touch();
    let before = faults();
    touch();
    faults() - before
}

const PAGES_4K: i64 = (64 << 20) / 4096;

fn main() {
    use tch::{Device, Kind, Tensor};
    use transfer_lab::heap::{self, Mode};
    // The user's settings would change what is tested; no other thread exists yet.
    std::env::remove_var("THP_MEM_ALLOC_ENABLE");
    std::env::remove_var("TLAB_HEAP");
    assert_eq!(Mode::from_env().unwrap(), Mode::Reuse, "TLAB_HEAP unset is not `reuse`");
    // `huge` first: it must come before any tensor exists.
    std::env::set_var("TLAB_HEAP", "huge");
    let asked = heap::configure_process().unwrap();
    assert_eq!(asked, Mode::Huge);
    assert!(std::env::var_os("THP_MEM_ALLOC_ENABLE").is_none(), "the huge-page switch leaked to children");
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        assert!(!heap::set_mode(Mode::Reuse), "heap reuse claims to work off glibc");
        println!("heap: not glibc; the modes report themselves unavailable");
        return;
    }
    let vec = || drop(std::hint::black_box(vec![1u8; 64 << 20]));
    // One touch per page, as the kernel faults them; fill_ may run on several threads.
    let tensor = || drop(std::hint::black_box(Tensor::ones([16 << 20], (Kind::Float, Device::Cpu))));
    tch::set_num_threads(1);

    let (huge, thp) = heap::huge_pages();
    let tensor_huge = faults_of_second(tensor);
    println!(
        "heap: kernel THP {thp:?}, tensors on huge pages: {huge}; a second 64 MiB tensor faulted {tensor_huge} pages"
    );
    if matches!(thp.as_deref(), Some("always" | "madvise")) {
        assert!(huge, "the kernel allows huge pages, yet tensors are not on them");
        assert!(tensor_huge * 4 < PAGES_4K, "{tensor_huge} faults: not on huge pages (4 KiB pages: {PAGES_4K})");
    } else {
        assert!(!huge && heap::mode() == Mode::System, "no THP in the kernel, yet huge mode is in effect");
    }

    assert!(heap::set_mode(Mode::System));
    let fresh = faults_of_second(vec);
    assert!(heap::set_mode(Mode::Reuse) && heap::reusing());
    let reused = faults_of_second(vec);
    heap::release_free_pages();
    println!("heap: second 64 MiB block faulted {fresh} pages under glibc's defaults, {reused} with reuse");
    // 64 MiB is 16,384 pages of 4 KiB (32 with transparent huge pages).
    assert!(fresh >= 32, "glibc's defaults faulted only {fresh} pages for a fresh 64 MiB block");
    assert!(reused * 10 < fresh, "reuse still faulted {reused} pages (defaults: {fresh})");

    std::env::set_var("TLAB_HEAP", "fast");
    let err = heap::configure_process().unwrap_err().to_string();
    assert!(err.contains("TLAB_HEAP") && err.contains("fast"), "unclear error: {err}");
    println!("test heap_modes ... ok");
}
