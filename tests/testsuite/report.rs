//! Charts render from fixture runs: SVGs are well-formed and carry their labels, PNGs
//! decode at the asked size with visible content, and `report.md` lists every run.
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};
use transfer_lab::cache::Cache;
use transfer_lab::report::{self, Chart, Comparison, ComparisonBar, Figure, Pca, RunData, RunLabel};

const SYNTH: &str = "20260101-120000-synthetic-probe";
const CIFAR: &str = "20260102-090000-cifar10-224";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/runs").join(name)
}

/// An empty cache inside the test's temp folder.
fn no_cache(tmp: &tempfile::TempDir) -> Cache {
    Cache::new(tmp.path().join("cache"))
}

fn load(name: &str) -> RunData {
    RunData::load(&fixture(name)).unwrap()
}

/// Well-formedness by a tag stack: every element closes, in order, under one root.
fn assert_well_formed(svg: &str) {
    let mut stack: Vec<String> = vec![];
    let mut roots = 0;
    let mut rest = svg.trim();
    if let Some(i) = rest.strip_prefix("<?xml").and_then(|r| r.find("?>")) {
        rest = &rest[5 + i + 2..];
    }
    while let Some(open) = rest.find('<') {
        let text = &rest[..open];
        assert!(!stack.is_empty() || text.trim().is_empty(), "text outside the root: {text:?}");
        assert!(!text.contains('>'), "stray '>' in text {text:?}");
        for (i, _) in text.match_indices('&') {
            let ent = &text[i..text[i..].find(';').map(|j| i + j + 1).expect("unterminated entity")];
            assert!(
                ["&lt;", "&gt;", "&amp;", "&quot;", "&apos;"].contains(&ent) || ent.starts_with("&#"),
                "bad entity {ent}"
            );
        }
        let close = rest[open..].find('>').expect("unterminated tag") + open;
        let tag = &rest[open + 1..close];
        assert_eq!(tag.matches('"').count() % 2, 0, "unbalanced quotes in <{tag}>");
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop().as_deref(), Some(name.trim()), "mismatched </{name}>");
        } else if !tag.starts_with('!') {
            let name: String = tag.chars().take_while(|c| !c.is_whitespace() && *c != '/').collect();
            assert!(!name.is_empty(), "empty tag");
            if stack.is_empty() {
                roots += 1;
            }
            if !tag.ends_with('/') {
                stack.push(name);
            }
        }
        rest = &rest[close + 1..];
    }
    assert!(stack.is_empty(), "unclosed {stack:?}");
    assert!(rest.trim().is_empty(), "trailing text {rest:?}");
    assert_eq!(roots, 1, "one root element");
    assert!(svg.contains("<svg"), "not an SVG");
}

/// The contents of every `<text>` element, entities decoded.
fn texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| Some(t[t.find('>')? + 1..t.find("</text>")?].to_string()))
        .map(|t| t.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&amp;", "&"))
        .collect()
}

fn assert_has_text(svg: &str, wanted: &[&str]) {
    let all = texts(svg);
    for w in wanted {
        assert!(all.iter().any(|t| t.contains(w)), "no text {w:?} in {all:?}");
    }
}

/// Renders `fig` to SVG (checked) and PNG (decoded, checked not blank); returns the SVG.
fn render(fig: Figure) -> String {
    let (w, h) = fig.size();
    let svg = Chart::render(w, h, |a| fig.draw(a)).unwrap().svg().to_string();
    assert_well_formed(&svg);
    let png = report::render_png(w, h, |a| fig.draw(a)).unwrap();
    assert_visible_png(&png, w, h, 20);
    svg
}

/// Decodes, checks the size, and asks for real content: several colours and a share of
/// non-white pixels.
fn assert_visible_png(png: &[u8], w: u32, h: u32, min_colours: usize) {
    let img = image::load_from_memory(png).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (w, h));
    let colours: std::collections::HashSet<[u8; 3]> = img.pixels().map(|p| p.0).collect();
    let inked = img.pixels().filter(|p| p.0 != [255, 255, 255]).count();
    assert!(colours.len() >= min_colours, "only {} colours", colours.len());
    assert!(inked * 500 > (w * h) as usize, "only {inked} non-white pixels");
}

#[test]
fn training_curves_show_both_splits_test_line_and_caveats() {
    let run = load(SYNTH);
    assert_eq!(run.epochs.len(), 5);
    let svg = render(Figure::TrainingCurves(&run.curves()));
    assert_has_text(
        &svg,
        &["train acc", "val acc", "test acc 84.0%", "train loss", "val loss", "epoch", "accuracy", "loss"],
    );
    assert_has_text(&svg, &["Training curves: 20260101-120000-synthetic-probe [SYNTHETIC DATA] [RANDOM WEIGHTS]"]);
    assert!(svg.matches("<polyline").count() >= 4, "four curves");
    let real = render(Figure::TrainingCurves(&load(CIFAR).curves()));
    assert!(!real.contains("SYNTHETIC") && !real.contains("RANDOM"), "real runs carry no caveat");
}

#[test]
fn confusion_heatmap_has_every_class_and_count() {
    let run = load(CIFAR);
    let svg = render(Figure::Confusion(&run.confusion));
    let classes: Vec<&str> = run.confusion.classes.iter().map(String::as_str).collect();
    assert_eq!(classes.len(), 10);
    assert_has_text(&svg, &classes);
    assert_has_text(&svg, &["predicted class", "true class", "Confusion matrix"]);
    let diag: Vec<String> = (0..10).map(|i| run.confusion.counts[i][i].to_string()).collect();
    assert_has_text(&svg, &diag.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(svg.matches("<rect").count() >= 100, "a cell per pair");
    // Long synthetic names (rotated labels) still render.
    let s = render(Figure::Confusion(&load(SYNTH).confusion));
    assert_has_text(&s, &["synthetic-red-hstripes", "synthetic-grey-noise", "[SYNTHETIC DATA]"]);
}

#[test]
fn per_class_bars_match_the_confusion_matrix() {
    let run = load(SYNTH);
    let acc = run.confusion.per_class_accuracy();
    assert_eq!(acc[0], Some(17.0 / 20.0));
    let svg = render(Figure::PerClassAccuracy(&run.confusion));
    assert_has_text(&svg, &["synthetic-red-hstripes", "synthetic-grey-noise", "85.0%", "95.0%", "Per-class accuracy"]);
}

#[test]
fn comparison_names_every_run_and_flags_synthetic() {
    let data = Comparison {
        by: "image size".into(),
        bars: vec![
            ComparisonBar { label: "200 px".into(), test_accuracy: 0.71, synthetic: false },
            ComparisonBar { label: "224 px".into(), test_accuracy: 0.78, synthetic: false },
            ComparisonBar { label: "64 px".into(), test_accuracy: 0.9, synthetic: true },
        ],
    };
    let svg = render(Figure::Comparison(&data));
    assert_has_text(
        &svg,
        &["Test accuracy by image size", "200 px", "224 px", "64 px (synthetic)", "71.0%", "90.0%", "SYNTHETIC"],
    );
}

#[test]
fn throughput_plots_progress_and_explains_cache_hits() {
    let run = load(SYNTH);
    assert_eq!(run.throughput.points.len(), 27, "20 train + 7 test progress events");
    assert!(run.throughput.points.windows(2).all(|w| w[0].t_s <= w[1].t_s));
    let svg = render(Figure::Throughput(&run.throughput));
    assert_has_text(
        &svg,
        &["train (220.0 images/s at the end)", "test (218.0", "images/s", "time since run start (s)"],
    );
    let cached = load(CIFAR);
    assert!(cached.throughput.points.is_empty());
    let fig = Figure::Throughput(&cached.throughput);
    let svg = Chart::render(600, 300, |a| fig.draw(a)).unwrap();
    assert_has_text(svg.svg(), &["features came from the cache (train, test)"]);
    // Only text on this chart: ink in the PNG means the shipped font rasterised glyphs.
    let png = report::render_png(600, 300, |a| fig.draw(a)).unwrap();
    assert_visible_png(&png, 600, 300, 10);
}

/// Points `t * dir` with tiny noise: PC1 is t centred, and explains nearly all variance.
/// t grows faster than linearly so its largest centred value (the last) fixes the sign.
fn line_data(n: i64, d: i64) -> (Tensor, Tensor, Vec<f64>) {
    let t: Vec<f64> = (0..n).map(|i| (i as f64).powf(1.5)).collect();
    let mean = t.iter().sum::<f64>() / n as f64;
    let centred: Vec<f64> = t.iter().map(|v| v - mean).collect();
    let dir = Tensor::ones([d], (Kind::Double, tch::Device::Cpu)) / (d as f64).sqrt();
    let x = Tensor::from_slice(&t).unsqueeze(1) * dir.unsqueeze(0);
    let x = x + Tensor::randn([n, d], (Kind::Double, tch::Device::Cpu)) * 1e-3;
    let labels = Tensor::from_slice(&(0..n).map(|i| i % 3).collect::<Vec<i64>>());
    (x.to_kind(Kind::Float), labels, centred)
}

#[test]
fn pca_finds_the_main_direction_through_both_decompositions() {
    tch::manual_seed(0);
    let classes = vec!["alpha".to_string(), "beta".into(), "gamma".into()];
    // n <= d uses the Gram matrix, n > d the covariance: both must agree on the answer.
    for (n, d) in [(6, 20), (60, 4)] {
        let (x, y, t) = line_data(n, d);
        let pca = Pca::compute(RunLabel::new("toy"), &x, &y, &classes, 1000).unwrap();
        assert_eq!(pca.points.len(), n as usize);
        assert!(pca.explained[0] > 0.999 && pca.explained[1] < 1e-3, "{n}x{d}: {:?}", pca.explained);
        for (p, ti) in pca.points.iter().zip(&t) {
            assert!((p.0 - ti).abs() < 1e-2 * (1.0 + ti.abs()), "{n}x{d}: pc1 {} vs t {ti}", p.0);
        }
        assert_eq!(pca.points[4].2, 1);
    }
    let (x, y, _) = line_data(300, 8);
    let pca = Pca::compute(RunLabel::new("toy"), &x, &y, &classes, 100).unwrap();
    assert_eq!(pca.points.len(), 100, "subsampled");
    let svg = render(Figure::Pca(&pca));
    assert_has_text(&svg, &["alpha", "beta", "gamma", "PC1 (", "PC2 (", "toy"]);
    let bad = Pca::compute(RunLabel::new("toy"), &x, &Tensor::from_slice(&[0i64, 1]), &classes, 10).unwrap_err();
    assert!(bad.to_string().contains("[300, 8]"), "{bad}");
}

#[test]
fn report_lists_every_run_with_its_charts() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("cmp");
    let md_path = report::write_report(&[fixture(SYNTH), fixture(CIFAR)], Some(&out), &no_cache(&tmp)).unwrap();
    assert_eq!(md_path, out.join("report.md"));
    let md = std::fs::read_to_string(&md_path).unwrap();
    for name in [SYNTH, CIFAR] {
        assert!(md.contains(&format!("| {name} |")), "table row for {name}:\n{md}");
        assert!(md.contains(&format!("## {name}")), "section for {name}");
        for chart in ["curves", "confusion", "per-class"] {
            let stem = format!("{name}-{chart}");
            assert!(md.contains(&format!("({stem}.svg)")), "link to {stem}");
            assert_well_formed(&std::fs::read_to_string(out.join(format!("{stem}.svg"))).unwrap());
            assert!(out.join(format!("{stem}.png")).is_file());
        }
    }
    assert!(md.contains("**(SYNTHETIC)**") && md.contains("**(RANDOM)**"), "{md}");
    assert!(md.contains("84.00%") && md.contains("224 px") && md.contains("| linear-probe |"), "{md}");
    assert!(md.contains("(comparison.svg)") && out.join("comparison.png").is_file());
    assert_has_text(
        &std::fs::read_to_string(out.join("comparison.svg")).unwrap(),
        &[SYNTH, CIFAR, "(64 px) (synthetic)", "(linear-probe, 224 px)"],
    );
    assert!(out.join(format!("{SYNTH}-throughput.svg")).is_file());
    assert!(!out.join(format!("{CIFAR}-throughput.svg")).exists(), "cache hit: no throughput chart");
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

#[test]
fn single_run_report_goes_into_the_run_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(SYNTH);
    std::fs::create_dir(&dir).unwrap();
    for f in ["summary.json", "epochs.csv", "confusion.csv", "events.jsonl", "config.json"] {
        std::fs::copy(fixture(SYNTH).join(f), dir.join(f)).unwrap();
    }
    let md = report::write_report(std::slice::from_ref(&dir), None, &no_cache(&tmp)).unwrap();
    assert_eq!(md, dir.join("report.md"));
    for f in ["curves.svg", "curves.png", "confusion.svg", "per-class.png", "throughput.svg"] {
        assert!(dir.join(f).is_file(), "{f}");
    }
    assert!(!dir.join("comparison.svg").exists(), "one run: nothing to compare");
}

#[test]
fn bad_run_directories_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-run");
    let e = report::write_report(std::slice::from_ref(&missing), None, &no_cache(&tmp)).unwrap_err().to_string();
    assert!(e.contains("no-such-run"), "{e}");
    let empty = tmp.path().join("empty-run");
    std::fs::create_dir(&empty).unwrap();
    let e = report::write_report(&[fixture(SYNTH), empty.clone()], Some(tmp.path()), &no_cache(&tmp))
        .unwrap_err()
        .to_string();
    assert!(e.contains("empty-run") && e.contains("summary.json"), "{e}");
    std::fs::copy(fixture(SYNTH).join("summary.json"), empty.join("summary.json")).unwrap();
    std::fs::write(empty.join("epochs.csv"), "epoch,train_loss,train_acc,val_loss,val_acc\n1,oops\n").unwrap();
    let e = RunData::load(&empty).unwrap_err().to_string();
    assert!(e.contains("epochs.csv") && e.contains("line 2"), "{e}");
    let e = report::write_report(&[fixture(SYNTH), fixture(CIFAR)], None, &no_cache(&tmp)).unwrap_err().to_string();
    assert!(e.contains("--out"), "{e}");
}

#[test]
fn chart_displays_inline_in_evcxr() {
    let run = load(CIFAR);
    let chart = Figure::PerClassAccuracy(&run.confusion).chart().unwrap();
    let shown = chart.evcxr_content();
    assert!(shown.starts_with("EVCXR_BEGIN_CONTENT image/svg+xml\n<svg"), "{}", &shown[..60]);
    assert!(shown.ends_with("</svg>\nEVCXR_END_CONTENT"));
    assert_well_formed(chart.svg());
}

/// A CIFAR-10 run's mistakes gallery reads the pictures from the cache it is handed
/// (`tlab --cache-dir X report RUN`), and never downloads into any cache.
#[test]
fn report_reads_cifar_pictures_from_the_given_cache_only() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join(CIFAR);
    std::fs::create_dir(&run).unwrap();
    // trained.json records CIFAR-10 from the cache (`{"kind": "cifar10", "path": null}`).
    for f in ["summary.json", "epochs.csv", "confusion.csv", "events.jsonl", "config.json", "trained.json"] {
        std::fs::copy(fixture(CIFAR).join(f), run.join(f)).unwrap();
    }
    let mut csv = String::from("image,true,predicted,probability\n");
    for i in 0..6 {
        let (t, p) = if i % 2 == 0 { ("cat", "dog") } else { ("dog", "dog") };
        csv += &format!(",{t},{p},0.{}\n", 9 - i);
    }
    std::fs::write(run.join("predictions.csv"), csv).unwrap();
    // An empty cache: named in the report, nothing fetched into it.
    let empty = Cache::new(tmp.path().join("empty-cache"));
    let md = std::fs::read_to_string(report::write_report(std::slice::from_ref(&run), None, &empty).unwrap()).unwrap();
    let want = transfer_lab::data::cifar::cache_dir(&empty).display().to_string();
    assert!(md.contains("Thumbnails could not be made") && md.contains(&want), "{md}");
    assert!(!empty.root().exists(), "the report created or fetched into {}", empty.display());
    // A cache that holds CIFAR-10 (generated here, in the official layout): thumbnails.
    let full = Cache::new(tmp.path().join("full-cache"));
    transfer_lab::data::synthetic::write_synthetic_cifar(&transfer_lab::data::cifar::cache_dir(&full), 10, 8, 3)
        .unwrap();
    let md = std::fs::read_to_string(report::write_report(std::slice::from_ref(&run), None, &full).unwrap()).unwrap();
    assert!(!md.contains("Thumbnails could not be made"), "{md}");
    let thumbs = std::fs::read_dir(&run).unwrap().filter_map(|e| e.ok());
    assert_eq!(thumbs.filter(|e| e.file_name().to_string_lossy().starts_with("mistakes-")).count(), 3, "{md}");
}
