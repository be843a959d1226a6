//! The `tlab` binary: bad input gives clear errors; `tlab run` is deterministic end to end.
use crate::common::*;
use assert_cmd::Command;
use predicates::prelude::PredicateBooleanExt;
use predicates::str::contains;

fn tlab(cache: &std::path::Path) -> Command {
    let mut c = Command::cargo_bin("tlab").unwrap();
    c.arg("--threads").arg(test_threads().to_string()).arg("--cache-dir").arg(cache);
    c
}

#[test]
fn bad_flags_and_inputs_are_named_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    tlab(t).args(["extract", "--arch", "resnet51"]).assert().failure().stderr(contains("resnet51"));
    tlab(t).args(["extract", "--layer", "layer9"]).assert().failure().stderr(contains("layer9"));
    tlab(t).args(["extract", "--norm", "imagenet"]).assert().failure().stderr(contains("imagenet"));
    tlab(t).args(["extract", "--size", "5"]).assert().failure().stderr(contains("--size 5"));
    tlab(t).args(["extract", "--device", "tpu"]).assert().failure().stderr(contains("tpu"));
    tlab(t).args(["run", "--strategy-typo"]).assert().failure().stderr(contains("--strategy-typo"));
    tlab(t).args(["run", "--strategy", "finetune"]).assert().failure().stderr(contains("finetune"));
    tlab(t).args(["run", "--strategy", "fine-tune", "--unfreeze", "most"]).assert().failure().stderr(contains("most"));
    tlab(t)
        .args(["fetch", "weights", "resnet18", "--variant", "v2"])
        .assert()
        .failure()
        .stderr(contains("IMAGENET1K_V1"));
    // A ViT's size must tile into patches: the nearest that do are named.
    tlab(t)
        .args(["run", "--dataset", "synthetic", "--arch", "dinov2-vits14", "--weights", "random", "--size", "200"])
        .assert()
        .failure()
        .stderr(contains("200").and(contains("196 or 210")));
    tlab(t)
        .args(["extract", "--dataset", "synthetic", "--arch", "resnet18", "--weights", "random", "--pool", "cls"])
        .assert()
        .failure()
        .stderr(contains("class token"));
    tlab(t).args(["extract", "--pool", "max"]).assert().failure().stderr(contains("max"));
    tlab(t)
        .args(["run", "--dataset", "synthetic", "--arch", "resnet18", "--weights", "random", "--strategy", "fine-tune"])
        .args(["--layer-decay", "0.5"])
        .assert()
        .failure()
        .stderr(contains("--layer-decay").and(contains("ViTs")));
    // No pinned download: where to get it is said.
    tlab(t)
        .args(["fetch", "weights", "dinov2-vits14-reg"])
        .assert()
        .failure()
        .stderr(contains("facebook/dinov2-with-registers-small"));
    // Offline with an empty Hub cache: what is missing and where it was looked for.
    let hf = t.join("hf");
    tlab(t)
        .env("HF_HOME", &hf)
        .env("HF_HUB_OFFLINE", "1")
        .args(["fetch", "weights", "dinov2-vits14"])
        .assert()
        .failure()
        .stderr(contains("facebook/dinov2-small").and(contains(hf.to_str().unwrap())));
    let missing = t.join("nope.pth");
    tlab(t)
        .args(["extract", "--dataset", "synthetic", "--weights", missing.to_str().unwrap(), "--arch", "resnet18"])
        .assert()
        .failure()
        .stderr(contains("nope.pth").and(contains("not found")));
    // A truncated CIFAR file given with --data is named.
    let cifar = t.join("cifar");
    std::fs::create_dir(&cifar).unwrap();
    transfer_lab::data::synthetic::write_synthetic_cifar(&cifar, 50, 10, 0).unwrap();
    let f = cifar.join("test_batch.bin");
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() - 100]).unwrap();
    tlab(t)
        .args([
            "extract",
            "--data",
            cifar.to_str().unwrap(),
            "--weights",
            "random",
            "--arch",
            "resnet18",
            "--split",
            "test",
        ])
        .assert()
        .failure()
        .stderr(contains("test_batch.bin").and(contains("truncated")));
}

fn run_once(cache: &std::path::Path, runs: &std::path::Path) -> serde_json::Value {
    let out = tlab(cache)
        .args(["run", "--dataset", "synthetic", "--synthetic-train", "300", "--synthetic-test", "100"])
        .args(["--arch", "resnet18", "--weights", "random", "--size", "64", "--epochs", "8", "--runs-dir"])
        .arg(runs)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("SYNTHETIC"), "the run must say its data is synthetic: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn run_is_deterministic_and_writes_a_complete_run_dir() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let a = run_once(tmp.path(), &runs);
    let b = run_once(tmp.path(), &runs);
    let (da, db) = (a["run_dir"].as_str().unwrap(), b["run_dir"].as_str().unwrap());
    assert_ne!(da, db);
    for f in ["epochs.csv", "confusion.csv", "per_class.csv", "steps.csv", "epochs.parquet", "per_class.parquet"] {
        let fa = std::fs::read(std::path::Path::new(da).join(f)).unwrap();
        assert_eq!(fa, std::fs::read(std::path::Path::new(db).join(f)).unwrap(), "{f} differs between runs");
    }
    for f in ["config.json", "events.jsonl", "summary.json", "head-best.safetensors"] {
        assert!(std::path::Path::new(da).join(f).is_file(), "{f} missing");
    }
    let acc = a["test_accuracy"].as_f64().unwrap();
    println!("synthetic tiny run (random resnet18, 64px): test accuracy {:.1}%", acc * 100.0);
    assert!(acc > 0.3, "far above 10% chance: {acc}");
    assert_eq!(a["synthetic"], true);
    let events = std::fs::read_to_string(std::path::Path::new(da).join("events.jsonl")).unwrap();
    assert!(events.lines().all(|l| transfer_lab::events::parse_line(l).is_some()));
    assert!(events.contains("\"kind\":\"run_finished\""));
    // `tlab report` on the two real runs: charts, the PCA of the cached features, tables.
    let out = tmp.path().join("report");
    tlab(tmp.path()).args(["report", da, db, "--out"]).arg(&out).assert().success();
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("SYNTHETIC") && md.contains("pca.svg") && md.contains("comparison.svg"), "{md}");
    // The most confident mistakes, as thumbnails of the (regenerated) synthetic images.
    assert!(md.contains("### Most confident mistakes"), "{md}");
    for line in md.lines().filter(|l| l.contains("-mistakes-")) {
        let name = line.split("](").nth(1).unwrap().split(')').next().unwrap();
        assert!(out.join(name).is_file(), "{name} missing");
    }
    assert!(!md.contains(&tmp.path().display().to_string()), "no machine path in the report:\n{md}");
    for f in ["summary.csv", "summary.parquet", "comparison.png"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    assert_eq!(std::fs::read_to_string(out.join("summary.csv")).unwrap().lines().count(), 3, "header + 2 runs");
}

#[test]
fn fine_tune_runs_end_to_end_on_images() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().unwrap();
    let out = tlab(tmp.path())
        .args(["run", "--strategy", "fine-tune", "--dataset", "synthetic", "--synthetic-train", "120"])
        .args(["--synthetic-test", "40", "--arch", "resnet18", "--weights", "random", "--size", "32"])
        .args(["--epochs", "2", "--image-epochs", "2", "--runs-dir"])
        .arg(tmp.path().join("runs"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["strategy"], "fine-tune");
    assert_eq!(s["test_samples"], 40);
    let dir = std::path::PathBuf::from(s["run_dir"].as_str().unwrap());
    for f in ["model-best.safetensors", "model-last.safetensors", "train-state.json", "probe/head-best.safetensors"] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let epochs = std::fs::read_to_string(dir.join("epochs.csv")).unwrap();
    assert_eq!(epochs.lines().count(), 3, "header + 2 image epochs: {epochs}");
}

#[test]
fn train_then_evaluate_in_separate_processes_and_resume() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let args = ["--dataset", "synthetic", "--synthetic-train", "120", "--synthetic-test", "40", "--arch", "resnet18"];
    // `tlab train` with `flags` on the small synthetic set; returns the run directory it printed.
    let train = |flags: &[&str]| {
        let out = tlab(tmp.path()).arg("train").args(flags).args(args).arg("--runs-dir").arg(&runs).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        std::path::PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    };
    let dir = train(&["--strategy", "earlier-layer", "--weights", "random", "--size", "32", "--epochs", "3"]);
    assert!(dir.join("trained.json").is_file() && !dir.join("summary.json").exists(), "test split untouched");
    tlab(tmp.path()).args(["report"]).arg(&dir).assert().failure().stderr(contains("summary.json"));
    let out = tlab(tmp.path()).arg("evaluate").arg(&dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((s["strategy"].as_str(), s["test_samples"].as_u64()), (Some("earlier-layer"), Some(40)));
    let features: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("features.json")).unwrap()).unwrap();
    assert!(features["train"].as_str().unwrap().contains("layer") || features["test"].is_string());
    // Layer3 of ResNet18 is 256 wide: the head was trained on it.
    let head = tch::Tensor::read_safetensors(dir.join("head-best.safetensors")).unwrap();
    assert!(head.iter().any(|(k, t)| k == "fc.weight" && t.size() == [10, 256]));
    // An interrupted image run resumes in place from its last epoch.
    let dir = train(&["--strategy", "scratch", "--size", "32", "--image-epochs", "1", "--no-augment"]);
    let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    cfg["config"]["images"]["epochs"] = 2.into();
    std::fs::write(dir.join("config.json"), serde_json::to_vec(&cfg).unwrap()).unwrap();
    let out = tlab(tmp.path()).args(["train", "--resume"]).arg(&dir).output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && log.contains("resuming after epoch 1"), "{log}");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("train-state.json")).unwrap()).unwrap();
    assert_eq!(state["epoch"], 2);
}

#[test]
fn help_lists_every_choice_and_dash_flags() {
    // `-h` lists the values on one line; `--help` adds what each means.
    let out = Command::cargo_bin("tlab").unwrap().args(["run", "-h"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    let arches: Vec<String> = transfer_lab::models::Arch::all().iter().map(|a| a.name()).collect();
    assert!(arches.len() >= 9 && arches.contains(&"convnext-tiny".to_string()), "{arches:?}");
    for values in [
        "linear-probe, earlier-layer, fine-tune, pretrained-init, scratch, logreg, knn",
        "easy, hard",
        &arches.join(", "),
        "bilinear, bicubic",
        "layer1, layer2, layer3, layer4",
        "torchvision, keras-caffe, clip",
        "mean, cls, cls+mean",
        "fp32, bf16, fp16",
        "cifar10, synthetic, folder",
        "layer4, all",
        "frozen, train",
        "last, random, stratified",
        "crop, squash",
    ] {
        assert!(help.contains(&format!("[possible values: {values}]")), "`tlab run -h` lacks {values}:\n{help}");
    }
    assert!(help.contains("v1 | v2") && help.contains("auto, cpu, cuda or cuda:N"), "{help}");
    let out = Command::cargo_bin("tlab").unwrap().args(["dash", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--runs-dir", "--pid", "--plain", "--tui", "--once", "--fps", "[RUN_DIR]"] {
        assert!(help.contains(flag), "`tlab dash --help` lacks {flag}:\n{help}");
    }
    // A typo is a parse error naming the value, before anything runs.
    tlab(std::path::Path::new("unused")).args(["dash", "--fps", "0"]).assert().failure().stderr(contains("--fps"));
}

#[test]
fn readme_lists_the_weights_registry() {
    let path = root().join("README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let (start, end) = ("<!-- registry:", "<!-- /registry -->");
    let (a, b) = (readme.find(start).expect("registry marker"), readme.find(end).expect("end marker"));
    let head = a + readme[a..].find("-->\n").unwrap() + 4;
    let want = transfer_lab::models::weights::registry_markdown();
    assert!(want.lines().count() >= 2 + transfer_lab::models::Arch::all().len(), "{want}");
    if readme[head..b] != want {
        if std::env::var_os("TLAB_BLESS").is_some() {
            std::fs::write(&path, format!("{}{want}{}", &readme[..head], &readme[b..])).unwrap();
        } else {
            panic!("README.md's weights table is stale: rerun with TLAB_BLESS=1\n{want}");
        }
    }
}
