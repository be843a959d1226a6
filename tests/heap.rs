//! Heap modes (`transfer_lab::heap`): the pool hands a freed large tensor block to the next
//! request of its size and never maps more than its peak of live bytes, reuse keeps a freed
//! large block's pages, huge pages fault a large tensor in 2 MiB at a time. `harness = false`: this runs on the main
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
    assert_eq!(Mode::from_env().unwrap(), Mode::Pool, "TLAB_HEAP unset is not `pool`");
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

    pool(tensor);

    std::env::set_var("TLAB_HEAP", "fast");
    let err = heap::configure_process().unwrap_err().to_string();
    assert!(err.contains("TLAB_HEAP") && err.contains("fast"), "unclear error: {err}");
    println!("test heap_modes ... ok");
}

/// Resident memory of this process, in bytes.
fn rss() -> i64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    statm.split_whitespace().nth(1).unwrap().parse::<i64>().unwrap() * 4096
}

fn pool(tensor: impl Fn()) {
    use tch::{Device, Kind, Tensor};
    use transfer_lab::heap::{self, Mode};
    // A channels-last convolution: oneDNN takes its scratchpad through c10's raw allocator
    // interface, which needs the pool's single deleter.
    let nhwc = |t: Tensor| t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2]);
    let x = nhwc(Tensor::randn([2, 16, 40, 40], (Kind::Float, Device::Cpu)));
    let w = nhwc(Tensor::randn([32, 16, 3, 3], (Kind::Float, Device::Cpu)));
    let conv = || x.conv2d(&w, None::<Tensor>, [1], [1], [1], 1);
    let by_system = conv();
    assert!(heap::set_mode(Mode::Pool) && heap::mode() == Mode::Pool, "the pool did not install");
    let by_pool = conv();
    assert!(by_pool.equal(&by_system), "a convolution's result changed under the pool");
    let before = heap::pool_stats().expect("the pool is built on Linux");
    let reused = faults_of_second(&tensor);
    let after = heap::pool_stats().unwrap();
    println!("heap: pool: a second 64 MiB tensor faulted {reused} pages; {after:?}");
    assert!(reused * 100 < PAGES_4K, "the pool's cached block still faulted {reused} pages");
    assert_eq!((after.hits - before.hits, after.misses - before.misses), (1, 1), "one miss, then one hit");
    assert!(after.cached >= 64 << 20, "the freed block is not cached: {after:?}");

    // Passes that allocate the same sizes in the same order, three tensors live at a time,
    // as a forward pass's activations do; then a smaller batch's pass (served from the
    // larger cached blocks); then one tensor larger than any cached block, which must unmap
    // cached ones to stay within twice the peak.
    heap::release_free_pages();
    let big = [8i64, 3, 5, 3, 8, 2, 6];
    let small = big.map(|m| m * 512);
    let pass = |kib: &[i64], value: f64| -> (PoolDelta, u64) {
        let before = heap::pool_stats().unwrap();
        let mut window: Vec<Tensor> = Vec::new();
        let mut most = 0u64;
        for (i, &k) in kib.iter().enumerate() {
            let v = value + i as f64;
            window.push(Tensor::full([k * 256], v, (Kind::Float, Device::Cpu)));
            if window.len() > 3 {
                drop(window.remove(0));
            }
            most = most.max(window.iter().map(|t| t.numel() as u64 * 4).sum());
            let s = heap::pool_stats().unwrap();
            assert!(s.live + s.cached <= 2 * s.peak, "the pool maps over twice its peak of live bytes: {s:?}");
            let last = window.last().unwrap();
            assert_eq!((last.min().double_value(&[]), last.max().double_value(&[])), (v, v), "pooled data changed");
        }
        let first = &window[0];
        let v = value + (kib.len() - window.len()) as f64;
        assert_eq!(first.min().double_value(&[]), v, "a pooled tensor was overwritten while live");
        drop(window);
        let s = heap::pool_stats().unwrap();
        (PoolDelta::between(before, s), most)
    };
    let kib_big = big.map(|m| m * 1024);
    let (first, most_big) = pass(&kib_big, 10.0);
    let (second, _) = pass(&kib_big, 20.0);
    let (third, _) = pass(&kib_big, 30.0);
    println!("heap: pool passes of 7 sizes: misses {}, {}, {}", first.misses, second.misses, third.misses);
    assert_eq!((second.misses, third.misses), (0, 0), "a repeated pass missed the cache");
    assert_eq!(third.hits, big.len() as u64);
    let (smaller, _) = pass(&small, 40.0);
    assert!(smaller.hits >= 4, "a smaller pass's sizes were rarely served from larger blocks: {} hits", smaller.hits);
    let s = heap::pool_stats().unwrap();
    // Each block is its tensor plus a header, rounded up to a page; four blocks are live for
    // a moment, before the window drops its oldest.
    let bound = most_big + 8 * 1024 * 1024 + 4 * 8192;
    assert!(s.peak <= bound, "peak {} over the most ever live, {bound}", s.peak);
    let one = Tensor::ones([(s.peak / 4) as i64], (Kind::Float, Device::Cpu));
    let s = heap::pool_stats().unwrap();
    drop(one);
    println!("heap: pool after a smaller pass and one tensor of the peak's size: {s:?}");
    assert!(s.unmapped > 0, "nothing was unmapped; the test lost its point: {s:?}");
    assert!(s.live + s.cached <= 2 * s.peak, "the pool maps over twice its peak of live bytes: {s:?}");

    let rss_cached = rss();
    heap::release_free_pages();
    let trimmed = heap::pool_stats().unwrap();
    let rss_trimmed = rss();
    println!(
        "heap: pool trim: cached {} -> {} MB, RSS {} -> {} MB",
        s.cached >> 20,
        trimmed.cached >> 20,
        rss_cached >> 20,
        rss_trimmed >> 20
    );
    assert_eq!(trimmed.cached, 0);
    assert!(rss_cached - rss_trimmed >= (s.cached as i64) * 9 / 10, "trim did not give the cached pages back");
    assert!(heap::set_mode(Mode::System) && heap::pool_stats().unwrap().cached == 0);
}

/// Counter changes over a span.
struct PoolDelta {
    hits: u64,
    misses: u64,
}

impl PoolDelta {
    fn between(a: transfer_lab::heap::PoolStats, b: transfer_lab::heap::PoolStats) -> PoolDelta {
        PoolDelta { hits: b.hits - a.hits, misses: b.misses - a.misses }
    }
}
