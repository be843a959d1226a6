//! Where the work runs, as users spell it: `auto`, `cpu`, `cuda`, `cuda:N`. One type for
//! the command line (clap parses it through `FromStr`), the run's settings (serde writes
//! its spelling) and the library, which resolves it to a `tch::Device`.
use crate::{Error, Result};
use std::fmt;
use std::str::FromStr;
use tch::Device;

/// How devices are spelled, for `--help` and errors.
pub const DEVICE_VALUES: &str = "auto, cpu, cuda, cuda:N";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DeviceChoice {
    /// The first GPU when there is one, else the CPU.
    #[default]
    Auto,
    Cpu,
    Cuda(usize),
}

impl DeviceChoice {
    /// The libtorch device (`Auto` looks for a GPU now).
    pub fn resolve(self) -> Device {
        match self {
            DeviceChoice::Auto => Device::cuda_if_available(),
            DeviceChoice::Cpu => Device::Cpu,
            DeviceChoice::Cuda(i) => Device::Cuda(i),
        }
    }
}

impl FromStr for DeviceChoice {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceChoice::Cuda)
                .ok_or_else(|| Error::invalid("device", format!("`{s}`; expected {DEVICE_VALUES}"))),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Auto => f.write_str("auto"),
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl serde::Serialize for DeviceChoice {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for DeviceChoice {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_round_trip_and_typos_are_named() {
        for (s, d) in [("auto", DeviceChoice::Auto), ("cpu", DeviceChoice::Cpu), ("cuda:1", DeviceChoice::Cuda(1))] {
            assert_eq!(s.parse::<DeviceChoice>().unwrap(), d);
            assert_eq!(d.to_string(), s);
            assert_eq!(serde_json::to_string(&d).unwrap(), format!("\"{s}\""));
            assert_eq!(serde_json::from_str::<DeviceChoice>(&format!("\"{s}\"")).unwrap(), d);
        }
        assert_eq!("cuda".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cuda(0));
        let e = "gpu".parse::<DeviceChoice>().unwrap_err().to_string();
        assert!(e.contains("`gpu`") && e.contains(DEVICE_VALUES), "{e}");
        assert!(serde_json::from_str::<DeviceChoice>("\"cuda:x\"").unwrap_err().to_string().contains("cuda:x"));
        assert_eq!(DeviceChoice::Cpu.resolve(), Device::Cpu);
    }
}
