//! The report and every chart rendered by a real browser (headless Chromium, as Debian packages
//! it; `.ci/run` installs it): no console message and no XML error page, the DOM text holds the
//! plan's and the fleet's figures, and a screenshot has the asked-for size and shows the charts'
//! colours (the PNG decoded here; the screenshot stays in a temporary folder). One test per page,
//! so two run at once.
//!
//! Without Chromium the tests FAIL: set `KLEIN_SKIP_BROWSER=1` to skip them on purpose (each
//! says so on stderr). `KLEIN_CHROMIUM` names another binary.

mod util;

use std::path::{Path, PathBuf};
use std::process::Command;

use util::Dir;

/// The Chromium binary, or `None` when the test is skipped on purpose.
fn chromium() -> Option<PathBuf> {
    if std::env::var_os("KLEIN_SKIP_BROWSER").is_some_and(|v| v == "1") {
        eprintln!("KLEIN_SKIP_BROWSER=1: the browser test is skipped");
        return None;
    }
    let path = std::env::var_os("KLEIN_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.exists(),
        "{} is missing: install it (`apt-get install -y chromium`, as .ci/run does), point \
KLEIN_CHROMIUM at a Chromium, or set KLEIN_SKIP_BROWSER=1 to skip this test on purpose",
        path.display()
    );
    Some(path)
}

/// What a headless run of `page` gave: the DOM (or nothing) and the browser's log.
struct Rendered {
    dom: String,
    log: String,
}

/// Runs Chromium headless on `page` with a fresh profile: `--dump-dom`, or `--screenshot=png`.
fn render(
    chrome: &Path,
    dir: &Path,
    page: &Path,
    screenshot: Option<(&Path, u32, u32)>,
) -> Rendered {
    let profile = tempfile::tempdir_in(dir).unwrap();
    let mut cmd = Command::new(chrome);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--enable-logging=stderr",
        "--v=0",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()));
    match screenshot {
        Some((png, w, h)) => {
            cmd.arg(format!("--screenshot={}", png.display()))
                .arg(format!("--window-size={w},{h}"));
        }
        None => {
            cmd.arg("--dump-dom");
        }
    }
    let url = format!("file://{}", page.canonicalize().unwrap().display());
    // Output into files (a DOM dump is larger than a pipe holds), the run bounded in time.
    let (out_path, err_path) = (profile.path().join("stdout"), profile.path().join("stderr"));
    let mut child = cmd
        .arg(&url)
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", chrome.display()));
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > std::time::Duration::from_secs(120) {
            let _ = child.kill();
            panic!("chromium ran longer than 120 s on {url}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let out = util::Output {
        stdout: std::fs::read_to_string(&out_path).unwrap(),
        stderr: std::fs::read_to_string(&err_path).unwrap(),
        code: status.code().unwrap_or(-1),
    };
    assert_eq!(out.code, 0, "chromium on {url}: {}", out.stderr);
    let log = out.stderr;
    // The pages carry no script: any console message means the browser found something wrong.
    for line in log.lines() {
        assert!(
            !line.contains(":CONSOLE") && !line.contains("Uncaught"),
            "{url}: {line}"
        );
    }
    Rendered {
        dom: out.stdout,
        log,
    }
}

/// Width and height from a PNG's IHDR.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let be = |i: usize| u32::from_be_bytes(png[i..i + 4].try_into().unwrap());
    (be(16), be(20))
}

/// How many pixels of the screenshot are within 24 of `rgb` in every channel: the PNG's IDAT
/// inflated (`miniz_oxide`) and its rows unfiltered as the PNG specification defines them.
fn pixels_near(png: &Path, rgb: (u8, u8, u8)) -> u64 {
    let d = std::fs::read(png).unwrap();
    let be = |i: usize| u32::from_be_bytes(d[i..i + 4].try_into().unwrap()) as usize;
    let (w, h, depth, ctype) = (be(16), be(20), d[24], d[25]);
    assert!(depth == 8 && (ctype == 2 || ctype == 6), "{depth} {ctype}");
    let bpp = if ctype == 2 { 3 } else { 4 };
    let (mut i, mut idat) = (8, Vec::new());
    while i < d.len() {
        let n = be(i);
        if &d[i + 4..i + 8] == b"IDAT" {
            idat.extend_from_slice(&d[i + 8..i + 8 + n]);
        }
        i += 12 + n;
    }
    let raw = miniz_oxide::inflate::decompress_to_vec_zlib(&idat).expect("inflate the IDAT");
    let stride = w * bpp;
    assert_eq!(raw.len(), h * (stride + 1), "{}", png.display());
    let (mut prev, mut hits) = (vec![0u8; stride], 0);
    for row in raw.chunks(stride + 1) {
        let mut line = row[1..].to_vec();
        for x in 0..stride {
            let a = if x >= bpp { line[x - bpp] } else { 0 };
            let (up, c) = (prev[x], if x >= bpp { prev[x - bpp] } else { 0 });
            let add = match row[0] {
                0 => 0,
                1 => a,
                2 => up,
                3 => ((a as u16 + up as u16) / 2) as u8,
                4 => {
                    let q = a as i16 + up as i16 - c as i16;
                    let (pa, pb, pc) = (
                        (q - a as i16).abs(),
                        (q - up as i16).abs(),
                        (q - c as i16).abs(),
                    );
                    if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        up
                    } else {
                        c
                    }
                }
                f => panic!("PNG filter {f}"),
            };
            line[x] = line[x].wrapping_add(add);
        }
        let near = |v: u8, t: u8| v.abs_diff(t) <= 24;
        hits += line
            .chunks(bpp)
            .filter(|p| near(p[0], rgb.0) && near(p[1], rgb.1) && near(p[2], rgb.2))
            .count() as u64;
        prev = line;
    }
    hits
}

/// Every figure of `figures` is somewhere in `text`.
fn holds_all(what: &str, text: &str, figures: &[String]) {
    for f in figures {
        assert!(
            text.contains(f.as_str()),
            "{what}: '{f}' is not in the rendered page"
        );
    }
}

/// A report rendered: its DOM holds the plan's and the fleet's figures (from their JSON) and an
/// inline chart, and a screenshot of its top has the asked-for size and the charts' blue.
fn report_renders(spec: &str) {
    let Some(chrome) = chromium() else { return };
    let dir = Dir::new("browser");
    dir.copy_from_repo(&format!("specs/{spec}"));
    let d = dir.path();
    let html = format!("{spec}.html");
    dir.command(["report", spec, "-o", &html])
        .run()
        .expect_code(0);
    let plan = dir.command(["plan", spec, "--format", "json"]).run().json();
    let chosen = &plan["chosen"];
    let mut figures = vec![
        format!("${:.2}/h", chosen["cost_per_hour"].as_f64().unwrap()),
        format!("${:.3}", chosen["cost_per_1000_images"].as_f64().unwrap()),
        format!("{} x {}", chosen["gpus"], chosen["gpu"].as_str().unwrap()),
    ];
    for c in chosen["classes"].as_array().unwrap() {
        figures.push(c["size"].as_str().unwrap().to_string());
    }
    let f = dir
        .command(["fleet", spec, "--format", "json"])
        .run()
        .json();
    if let Some(t) = f["total_usd_per_hour"].as_f64() {
        figures.push(format!("${t:.2}/h"));
    }
    for p in f["pools"].as_array().unwrap() {
        figures.push(format!("{} x {}", p["count"], p["gpu"].as_str().unwrap()));
    }
    let page = d.join(&html);
    let r = render(&chrome, d, &page, None);
    let text = util::html_text(&r.dom);
    holds_all(spec, &text, &figures);
    assert!(r.dom.contains("<svg"), "{spec}: no inline chart");
    let _ = r.log;
    let png = d.join(format!("{spec}.png"));
    render(&chrome, d, &page, Some((&png, 1280, 2400)));
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(png_size(&bytes), (1280, 2400), "{spec}");
    assert!(
        pixels_near(&png, (0x1f, 0x77, 0xb4)) > 500,
        "{spec}: no chart colour on the page"
    );
}

#[test]
fn the_prod_report_renders_in_chromium() {
    report_renders("prod.yaml");
}

#[test]
fn the_fleet_report_renders_in_chromium() {
    report_renders("fleet.yaml");
}

#[test]
fn the_stage_pools_report_renders_in_chromium() {
    report_renders("stage-pools-sizes.yaml");
}

/// An SVG alone, written by `args` on `spec`: Chromium parses it (no XML error page), every text
/// of the file is in the DOM it built, and a screenshot has its size and the charts' blue.
fn chart_renders(spec: &str, file: &str, args: &[&str]) {
    let Some(chrome) = chromium() else { return };
    let dir = Dir::new("browser");
    dir.copy_from_repo(&format!("specs/{spec}"));
    let d = dir.path();
    let out = dir.command(args).run();
    assert!(out.code == 0 || out.code == 1, "{args:?}: {}", out.stderr);
    let page = d.join(file);
    let svg = std::fs::read_to_string(&page).unwrap();
    let r = render(&chrome, d, &page, None);
    // An SVG Chromium cannot parse comes back as an error page.
    assert!(
        !r.dom.contains("This page contains the following errors"),
        "{file}: {}",
        r.dom
    );
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let texts: Vec<String> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(util::node_text)
        .collect();
    holds_all(file, &util::html_text(&r.dom), &texts);
    let png = d.join(format!("{file}.png"));
    render(&chrome, d, &page, Some((&png, 1200, 800)));
    assert_eq!(
        png_size(&std::fs::read(&png).unwrap()),
        (1200, 800),
        "{file}"
    );
    assert!(
        pixels_near(&png, (0x1f, 0x77, 0xb4)) > 50,
        "{file}: no chart colour drawn"
    );
}

#[test]
fn the_fleet_chart_renders_in_chromium() {
    chart_renders(
        "fleet.yaml",
        "fleet.svg",
        &["fleet", "fleet.yaml", "--svg", "fleet.svg"],
    );
}

#[test]
fn the_sweep_chart_renders_in_chromium() {
    chart_renders(
        "estimate-contract.yaml",
        "sweep.svg",
        &[
            "sweep",
            "estimate-contract.yaml",
            "--vary",
            "weights=bf16,fp8",
            "--vary",
            "gpu=h200,rtx-4090",
            "--svg",
            "sweep.svg",
        ],
    );
}

#[test]
fn the_front_chart_renders_in_chromium() {
    chart_renders(
        "throughput-batch.yaml",
        "front.svg",
        &["sweep", "throughput-batch.yaml", "--svg", "front.svg"],
    );
}
