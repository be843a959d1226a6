//! Every integration test, linked as one binary (cargo's own `tests/testsuite` shape):
//! libtorch and polars are linked once instead of once per file. `tests/heap.rs` stays
//! apart: it needs the main thread and a process of its own.
//!
//! Tests that run models take `common::torch_lock()`: two libtorch users on 2 cores slow
//! each other 3-25x.
#[path = "../common/mod.rs"]
mod common;

mod calibration;
mod cli;
mod curve;
mod data;
mod disk;
mod explain;
mod extract;
mod families;
mod fetch;
mod folders;
mod folders_hostile;
mod fuzz;
mod head;
mod httpd;
mod hub;
mod imbalance;
mod kill;
mod layout;
mod notebooks;
mod parity;
mod parity_convnext;
mod parity_efficientnet;
mod parity_keras;
mod parity_vit;
mod precision;
mod predict;
mod probes;
mod pth;
mod report;
mod resume;
mod setup;
mod shards;
mod slurm;
mod strategies;
#[cfg(feature = "dashboard")]
mod tui;
