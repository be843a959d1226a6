//! Heap reuse (`transfer_lab::heap`): a freed large block is not faulted in afresh.
//! `harness = false`: this runs on the main thread, whose allocations use glibc's main
//! arena, as `tlab`'s do; libtest's threads would have arenas of their own.

/// Minor page faults of this thread so far.
fn faults() -> i64 {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct it is given.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) }, 0);
    u.ru_minflt
}

/// Page faults of allocating, touching and freeing a 64 MiB block, the second time.
fn faults_of_second_block() -> i64 {
    let touch = || std::hint::black_box(vec![1u8; 64 << 20]).len();
    touch();
    let before = faults();
    touch();
    faults() - before
}

fn main() {
    use transfer_lab::heap;
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        assert!(!heap::set_reuse(true), "heap reuse claims to work off glibc");
        println!("heap: not glibc; reuse reports itself unavailable");
        return;
    }
    assert!(heap::set_reuse(false));
    let fresh = faults_of_second_block();
    assert!(heap::set_reuse(true) && heap::reusing());
    let reused = faults_of_second_block();
    heap::release_free_pages();
    println!("heap: second 64 MiB block faulted {fresh} pages under glibc's defaults, {reused} with reuse");
    // 64 MiB is 16,384 pages of 4 KiB (32 with transparent huge pages).
    assert!(fresh >= 32, "glibc's defaults faulted only {fresh} pages for a fresh 64 MiB block");
    assert!(reused * 10 < fresh, "reuse still faulted {reused} pages (defaults: {fresh})");
    println!("test heap_reuse_keeps_freed_blocks ... ok");
}
