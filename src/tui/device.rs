//! The device panel's data: accelerator, CPU model, the run process's memory and CPU.
//!
//! Sampled on a background thread (nvidia-smi takes ~100 ms) into a plain struct that
//! the view reads; tests build the struct by hand, so snapshots never see the host.
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceInfo {
    /// "NVIDIA H200" or the CPU model.
    pub name: String,
    pub gpu: Option<GpuStats>,
    pub process: ProcessInfo,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct GpuStats {
    pub util_pct: f64,
    pub mem_used_mib: f64,
    pub mem_total_mib: f64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessInfo {
    /// Whose figures these are: "run pid 123", "dashboard pid 77 (run pid unknown)".
    pub label: String,
    pub rss_bytes: Option<u64>,
    pub cpu_pct: Option<f64>,
}

/// Which process to watch: the run's when known (in-process, `--pid`, or a `pid` file in
/// the run directory), else this one, labelled as such.
pub fn watched_pid(run_dir: &crate::rundir::RunDir, given: Option<u32>) -> (u32, String) {
    let from_file = || run_dir.read_pid();
    match given.or_else(from_file) {
        Some(pid) => (pid, format!("run pid {pid}")),
        None => (std::process::id(), format!("dashboard pid {} (run pid unknown)", std::process::id())),
    }
}

/// Samples every `period` until dropped.
pub struct Sampler {
    latest: Arc<Mutex<DeviceInfo>>,
    /// Dropped with the sampler, which wakes its thread's wait at once.
    _stop: std::sync::mpsc::Sender<()>,
}

impl Sampler {
    pub fn start(pid: u32, label: String, period: Duration) -> Self {
        let latest = Arc::new(Mutex::new(DeviceInfo { name: "…".into(), ..Default::default() }));
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let l = latest.clone();
        std::thread::spawn(move || {
            let mut cpu = CpuMeter::new(pid);
            let name_cpu = cpu_model();
            loop {
                let gpu = nvidia_smi();
                let info = DeviceInfo {
                    name: gpu
                        .as_ref()
                        .map(|g| g.0.clone())
                        .or_else(|| name_cpu.clone())
                        .unwrap_or_else(|| "unknown CPU".into()),
                    gpu: gpu.map(|g| g.1),
                    process: ProcessInfo { label: label.clone(), rss_bytes: rss_bytes(pid), cpu_pct: cpu.sample() },
                };
                *l.lock().unwrap_or_else(|e| e.into_inner()) = info;
                if !matches!(stopped.recv_timeout(period), Err(std::sync::mpsc::RecvTimeoutError::Timeout)) {
                    break;
                }
            }
        });
        Sampler { latest, _stop: stop }
    }

    pub fn latest(&self) -> DeviceInfo {
        self.latest.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// (name, stats) of GPU 0 from `nvidia-smi`; `None` when absent or failing.
fn nvidia_smi() -> Option<(String, GpuStats)> {
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name,utilization.gpu,memory.used,memory.total", "--format=csv,noheader,nounits"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    parse_nvidia_smi(&String::from_utf8_lossy(&out.stdout))
}

pub fn parse_nvidia_smi(text: &str) -> Option<(String, GpuStats)> {
    let line = text.lines().next()?;
    let f: Vec<&str> = line.split(',').map(str::trim).collect();
    let num = |s: &str| s.trim_end_matches(|c: char| !c.is_ascii_digit()).trim().parse::<f64>().ok();
    let [name, util, used, total] = f[..] else { return None };
    Some((name.to_string(), GpuStats { util_pct: num(util)?, mem_used_mib: num(used)?, mem_total_mib: num(total)? }))
}

fn cpu_model() -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("model name"))?;
    Some(line.split_once(':')?.1.split_whitespace().collect::<Vec<_>>().join(" "))
}

fn proc_path(pid: u32, file: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/{file}"))
}

/// Resident set size from /proc (Linux); `None` elsewhere or once the process is gone.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(proc_path(pid, "status")).ok()?;
    let kb: u64 = text.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// utime + stime of a process, in clock ticks (Linux).
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(proc_path(pid, "stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Clock ticks per second; 100 on every mainstream Linux (std has no sysconf).
pub const TICKS_PER_S: f64 = 100.0;

/// CPU use between two samples, in percent of one core.
pub struct CpuMeter {
    pid: u32,
    last: Option<(Instant, u64)>,
}

impl CpuMeter {
    pub fn new(pid: u32) -> Self {
        CpuMeter { pid, last: cpu_ticks(pid).map(|t| (Instant::now(), t)) }
    }

    pub fn sample(&mut self) -> Option<f64> {
        let now = (Instant::now(), cpu_ticks(self.pid)?);
        let pct = self.last.and_then(|(t0, c0)| {
            let dt = now.0.duration_since(t0).as_secs_f64();
            (dt > 0.05).then(|| now.1.saturating_sub(c0) as f64 / TICKS_PER_S / dt * 100.0)
        });
        self.last = Some(now);
        pct
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nvidia_smi_lines() {
        let (name, g) = parse_nvidia_smi("NVIDIA H200, 87 %, 1024 MiB, 143771 MiB\n").unwrap();
        assert_eq!(name, "NVIDIA H200");
        assert_eq!(g, GpuStats { util_pct: 87.0, mem_used_mib: 1024.0, mem_total_mib: 143771.0 });
        assert!(parse_nvidia_smi("garbage").is_none());
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn reads_this_process() {
        let pid = std::process::id();
        assert!(rss_bytes(pid).unwrap() > 0);
        assert!(cpu_ticks(pid).is_some());
    }
}
